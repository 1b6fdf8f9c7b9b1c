"""Tables the rule styles and error injection read: abbreviations, templates, swaps, fabricated findings.

Kept as data so that a new abbreviation, hospital template or error word is one row, not new code.
Imported as ``rw`` (the finding labeler's vocabulary is :mod:`lexray.findings._lexicon`, imported as ``lex``).
"""

from __future__ import annotations

# (full form, shorthand). Order matters: longer phrases first so "right lower lobe" wins over "lower lobe".
# Every shorthand here is one the finding labeler's lexicon reads (checked by the equivalence test).
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("no acute cardiopulmonary abnormality", "NAD"),
    ("no acute cardiopulmonary abnormalities", "NAD"),
    ("no acute cardiopulmonary disease", "NAD"),
    ("no acute cardiopulmonary process", "NAD"),
    ("no acute disease", "NAD"),
    ("right lower lobe", "RLL"),
    ("right middle lobe", "RML"),
    ("right upper lobe", "RUL"),
    ("left lower lobe", "LLL"),
    ("left upper lobe", "LUL"),
    ("ground-glass opacities", "GGOs"),
    ("ground glass opacities", "GGOs"),
    ("ground-glass opacity", "GGO"),
    ("ground glass opacity", "GGO"),
    ("cardiothoracic ratio", "CTR"),
    ("congestive heart failure", "CHF"),
    ("chronic obstructive pulmonary disease", "COPD"),
    ("coronary artery bypass graft", "CABG"),
    ("endotracheal tube", "ETT"),
    ("nasogastric tube", "NGT"),
    ("peripherally inserted central catheter", "PICC"),
    ("status post", "s/p"),
    ("within normal limits", "WNL"),
    ("degenerative disc disease", "DDD"),
    ("thoracic spine", "T-spine"),
    ("consistent with", "c/w"),
    ("pneumonia", "PNA"),
    ("bilaterally", "bilat"),
    ("evaluation", "eval"),
    ("volumes", "vols"),
    ("disease", "dz"),
    ("pleural effusions", "pl effs"),
    ("pleural effusion", "pl eff"),
    ("follow-up", "f/u"),
    ("approximately", "~"),
    ("cardiopulmonary", "cp"),
    ("abnormalities", "abnls"),
    ("abnormality", "abnl"),
    ("normal", "nl"),
    ("pulmonary", "pulm"),
    ("vascularity", "vasc"),
    ("degenerative", "degen"),
    ("calcified", "calc"),
    ("moderate", "mod"),
    ("history", "hx"),
    ("interval", "intvl"),
    ("left", "Lt"),
    ("right", "Rt"),
    ("pneumothoraces", "PTX"),
    ("pneumothorax", "PTX"),
    ("atelectasis", "atx"),
    ("airspace consolidation", "consol"),
    ("consolidations", "consol"),
    ("consolidation", "consol"),
    ("bilateral", "b/l"),
    ("without", "w/o"),
    ("with", "w/"),
)

# Shorthand -> full form for the "expanded" style (a superset of the reverse of ABBREVIATIONS, with the
# abbreviations hospital reports use that the rule shorthand does not produce).
EXPANSIONS: tuple[tuple[str, str], ...] = (
    ("NAD", "no acute cardiopulmonary abnormality"),
    ("RLL", "right lower lobe"),
    ("RML", "right middle lobe"),
    ("RUL", "right upper lobe"),
    ("LLL", "left lower lobe"),
    ("LUL", "left upper lobe"),
    ("GGOs", "ground-glass opacities"),
    ("GGO", "ground-glass opacity"),
    ("CTR", "cardiothoracic ratio"),
    ("CHF", "congestive heart failure"),
    ("COPD", "chronic obstructive pulmonary disease"),
    ("CABG", "coronary artery bypass graft"),
    ("ETT", "endotracheal tube"),
    ("NGT", "nasogastric tube"),
    ("PICC", "peripherally inserted central catheter"),
    ("s/p", "status post"),
    ("PTX", "pneumothorax"),
    ("pl effs", "pleural effusions"),
    ("pl eff", "pleural effusion"),
    ("eff", "effusion"),
    ("effs", "effusions"),
    ("WNL", "within normal limits"),
    ("DDD", "degenerative disc disease"),
    ("T-spine", "thoracic spine"),
    ("c/w", "consistent with"),
    ("PNA", "pneumonia"),
    ("bilat", "bilaterally"),
    ("eval", "evaluation"),
    ("vols", "volumes"),
    ("dz", "disease"),
    ("f/u", "follow-up"),
    ("CM", "cardiomediastinal"),
    ("cp", "cardiopulmonary"),
    ("abnls", "abnormalities"),
    ("abnl", "abnormality"),
    ("nl", "normal"),
    ("pulm", "pulmonary"),
    ("vasc", "vascularity"),
    ("silh", "silhouette"),
    ("opacs", "opacities"),
    ("opac", "opacity"),
    ("degen", "degenerative"),
    ("calc", "calcified"),
    ("hx", "history"),
    ("intvl", "interval"),
    ("Lt", "left"),
    ("Rt", "right"),
    ("atx", "atelectasis"),
    ("consol", "consolidation"),
    ("b/l", "bilateral"),
    ("w/o", "without"),
    ("w/", "with"),
    ("CXR", "chest radiograph"),
    ("bibasal", "bibasilar"),
)

# Telegraphic rewrites for shorthand: (regex, replacement), applied per sentence in order.
TELEGRAPHIC: tuple[tuple[str, str], ...] = (
    (r"^There (?:is|are) (?:an? )?", ""),
    (r"\b(?:is|are) (?:seen|noted|present|identified|demonstrated|visualized)\b", ""),
    (r"\b(?:the|an?)\b ", ""),
    (r"\b(?:is|are) (?=(?:normal|clear|unremarkable|stable|unchanged|intact|within)\b)", ""),
)

# Hospital-style layouts. {findings} / {impression} are sentences joined by the template's separators.
HOSPITAL_TEMPLATES: tuple[dict[str, str], ...] = (
    {
        "name": "bullets",
        "findings": "FINDINGS:\n- {items}",
        "item_sep": "\n- ",
        "impression": "IMPRESSION:\n{numbered}",
        "section_sep": "\n\n",
    },
    {
        "name": "report_conclusion",
        "findings": "REPORT: {text}",
        "item_sep": " ",
        "impression": "CONCLUSION: {text}",
        "section_sep": "\n",
    },
    {
        "name": "chest_radiograph",
        "findings": "CHEST RADIOGRAPH\nFindings: {text}",
        "item_sep": " ",
        "impression": "Impression: {numbered_inline}",
        "section_sep": "\n",
    },
    {
        "name": "opinion",
        "findings": "Findings:\n{lines}",
        "item_sep": "\n",
        "impression": "OPINION: {text}",
        "section_sep": "\n",
    },
)

# Word swaps for error injection: each word maps to its alternatives (case is restored on use).
LATERALITY_SWAPS: dict[str, tuple[str, ...]] = {
    "bilateral": ("right", "left"),
    "bibasilar": ("right basilar", "left basilar"),
    "right": ("left",),
    "left": ("right",),
    "rll": ("LLL",),
    "lll": ("RLL",),
    "rul": ("LUL",),
    "lul": ("RUL",),
}
LOCATION_SWAPS: dict[str, tuple[str, ...]] = {
    "upper": ("lower",),
    "lower": ("upper",),
    "apical": ("basilar",),
    "apex": ("base",),
    "apices": ("bases",),
    "basilar": ("apical",),
    "basal": ("apical",),
    "base": ("apex",),
    "bases": ("apices",),
    "perihilar": ("peripheral",),
    "middle": ("upper",),
    "lingula": ("left lower lobe",),
    "lingular": ("left lower lobe",),
}
# Each word maps to its alternatives; the rng picks one per candidate. Every alternative names another
# degree of the labeler's severity lexicon, never a near-synonym ("slight" -> "mild" would restate it):
# mostly the other end of the scale, and for some low degrees also a middle one ("mild" -> "moderate",
# "small" / "trace" -> "moderate-sized"), a smaller change the encoder must still tell apart.
SEVERITY_SWAPS: dict[str, tuple[str, ...]] = {
    "mild": ("severe", "marked", "moderate"),
    "mildly": ("severely", "markedly", "moderately"),
    "minimal": ("extensive", "marked"),
    "minimally": ("markedly",),
    "minor": ("extensive",),
    "slight": ("marked",),
    "slightly": ("markedly",),
    "small": ("large", "moderate-sized"),
    "tiny": ("large",),
    "trace": ("large", "moderate-sized"),
    "subtle": ("extensive",),
    "moderate": ("minimal",),
    "moderately": ("minimally",),
    "large": ("small",),
    "severe": ("mild",),
    "severely": ("mildly",),
    "marked": ("mild",),
    "markedly": ("mildly", "slightly"),
    "extensive": ("minimal",),
    "massive": ("small",),
    "small to moderate": ("large",),
    "moderate to large": ("small",),
    "mild to moderate": ("severe",),
    "moderate to severe": ("mild",),
}
# A degree put on a finding stated without one ("Left pleural effusion." -> "Large left pleural
# effusion."): only the far end of the scale, which no unqualified statement implies. A predicate
# ("heart is enlarged") takes the adverb of the adjective (:data:`DEGREE_ADJECTIVES`).
SEVERITY_INSERTS: dict[str, tuple[str, ...]] = {
    "Pleural Effusion": ("large",),
    "Pneumothorax": ("large",),
    "Cardiomegaly": ("marked", "severe"),
    "Enlarged Cardiomediastinum": ("marked",),
    "Edema": ("severe",),
    "Atelectasis": ("extensive",),
    "Consolidation": ("extensive",),
    "Lung Opacity": ("extensive",),
}
# Chronicity and change over time, both ways (stable/persistent <-> new/worse/better, acute <-> old).
# "resolved" is absent on purpose: the labeler reads it as a negation ("has resolved" = no longer there).
CHRONICITY_SWAPS: dict[str, tuple[str, ...]] = {
    "acute": ("chronic",),
    "chronic": ("acute",),
    "new": ("unchanged", "stable", "persistent"),
    "newly": ("again",),
    "unchanged": ("new", "increased", "worsened"),
    "grossly unchanged": ("increased",),
    "stable": ("new", "increased", "worsening"),
    "persistent": ("new", "improving", "worsening"),
    "again seen": ("newly seen",),
    "again noted": ("newly seen",),
    "again demonstrated": ("newly seen",),
    "redemonstrated": ("newly seen",),
    "old": ("acute",),
    "healed": ("acute",),
    "healing": ("acute",),
    "remote": ("acute",),
    "worsening": ("improving",),
    "worsened": ("improved",),
    "improving": ("worsening",),
    "improved": ("worsened",),
    "increased": ("decreased",),
    "increasing": ("decreasing",),
    "decreased": ("increased",),
    "decreasing": ("increasing",),
    "progressed": ("improved",),
    "increase in": ("decrease in",),
    "decrease in": ("increase in",),
    "improvement in": ("worsening of",),
    "worsening of": ("improvement in",),
    "progression of": ("improvement in",),
}
# Hedges put before a positive finding to make it uncertain.
HEDGES: tuple[str, ...] = ("possible", "probable", "questionable", "suspected", "likely")
# Whole sentences that state a finding as uncertain ({} is its plain noun), for a sentence about it alone.
HEDGED_FRAMES: tuple[str, ...] = ("Possible {}.", "{} cannot be excluded.", "Findings suspicious for {}.")
# Evidential words that state a finding, and the hedged words that replace them ("opacity consistent with
# pneumonia" -> "opacity may represent pneumonia").
EVIDENTIAL_HEDGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"consistent with", ("suspicious for", "possibly representing")),
    (r"compatible with", ("suspicious for", "possibly representing")),
    (r"in keeping with", ("suspicious for",)),
    (r"diagnostic of", ("suspicious for",)),
    (r"represents", ("may represent", "likely represents")),
    (r"representing", ("possibly representing",)),
)
# Negation cues and the hedge that replaces them when the negated finding is made uncertain
# ("No evidence of pneumonia." -> "Possible pneumonia."), longest first.
NEGATION_HEDGES: tuple[tuple[str, str], ...] = (
    (r"there is no evidence of", "there is possible"),
    (r"no radiographic evidence of", "possible"),
    (r"no evidence of", "possible"),
    (r"there is no", "there is possible"),
    (r"there are no", "there are possible"),
    (r"without evidence of", "with possible"),
    (r"without", "with possible"),
    (r"negative for", "suspicious for"),
    (r"no definite", "possible"),
    (r"no", "possible"),
)
# Uncertainty cues and what replaces them to state the finding as certain (regex on words, in order).
CERTAINTY_REWRITES: tuple[tuple[str, str], ...] = (
    (r"cannot be excluded", "is present"),
    (r"can not be excluded", "is present"),
    (r"cannot be ruled out", "is present"),
    (r"(?:is )?not excluded", "is present"),
    (r"cannot exclude", "there is"),
    (r"(?:may|could|might) (?:represent|reflect)", "represents"),
    (r"likely represents", "represents"),
    (r"(?:suspicious|concerning|worrisome) for", "consistent with"),
    (r"suggestive of", "consistent with"),
    (r"is suspected", "is present"),
    (r"may be", "is"),
    (r"(?:questionable|possible|possibly|probable|probably|suspected|most likely|likely|presumed)\s+", ""),
)
# A plain noun phrase per observation, used when a sentence is rewritten around the observation.
CANONICAL: dict[str, str] = {
    "Enlarged Cardiomediastinum": "mediastinal widening",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "pulmonary opacity",
    "Lung Lesion": "pulmonary nodule",
    "Edema": "pulmonary edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion",
    "Pleural Other": "pleural thickening",
    "Fracture": "fracture",
    "Support Devices": "support device",
}

# Positive sentences for "fabricated finding" errors (several phrasings each; the rng picks one, and the
# {side}, {degree} and {size} words from the tuples below). A degree or size word gives a synthetic
# abnormal study (``data.fabricated_studies``) something a severity error can change: most Open-i train
# reports state no degree at all.
FABRICATIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("The mediastinum is widened.", "There is mediastinal widening."),
    "Cardiomegaly": ("The heart is enlarged.", "There is cardiomegaly."),
    "Lung Opacity": (
        "There is {degree} {side} basilar opacity.",
        "Patchy opacity is seen in the {side} lung base.",
    ),
    "Lung Lesion": ("There is a {side} upper lobe nodule.", "A {side} lung mass is present."),
    "Edema": ("There is pulmonary edema.", "Interstitial edema is present."),
    "Consolidation": (
        "There is {side} lower lobe consolidation.",
        "Focal consolidation is seen in the {side} lung base.",
    ),
    "Pneumonia": (
        "There is {side} lower lobe pneumonia.",
        "Findings are consistent with pneumonia in the {side} lung.",
    ),
    "Atelectasis": (
        "There is {degree} {side} basilar atelectasis.",
        "Atelectasis is seen at the {side} lung base.",
    ),
    "Pneumothorax": (
        "There is a {size} {side} apical pneumothorax.",
        "A small {side} pneumothorax is present.",
    ),
    "Pleural Effusion": (
        "There is a {size} {side} pleural effusion.",
        "A small {side} pleural effusion is present.",
    ),
    "Pleural Other": ("There is {degree} {side} pleural thickening.",),
    "Fracture": ("There is an acute fracture of a {side} rib.", "A {side} clavicle fracture is present."),
    "Support Devices": (
        "A right internal jugular central venous catheter is in place.",
        "A cardiac pacemaker is present.",
    ),
}
SIDES: tuple[str, ...] = ("right", "left")
DEGREES: tuple[str, ...] = ("mild", "moderate")
SIZES: tuple[str, ...] = ("small", "moderate", "large")
# Observations whose fabricated sentences always name a side (a laterality error can then be made).
SIDED_FABRICATIONS: frozenset[str] = frozenset(
    obs for obs, sentences in FABRICATIONS.items() if all("{side}" in t for t in sentences)
)

# Rewording for the "restyled" style: each group holds interchangeable phrasings of one statement (lower
# case; a match is replaced by another member of its group). Members must keep number agreement with
# the rest of the sentence and must not change what the labeler reads (every variant is re-checked).
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    (
        "heart size is normal",
        "heart is normal in size",
        "cardiac silhouette is normal in size",
        "heart size is within normal limits",
        "cardiac size is normal",
    ),
    ("cardiomediastinal silhouette", "cardiomediastinal contour"),
    (
        "no acute cardiopulmonary abnormality",
        "no acute cardiopulmonary disease",
        "no acute cardiopulmonary process",
        "no acute cardiopulmonary findings",
    ),
    ("is within normal limits", "is normal", "appears normal", "is unremarkable"),
    ("are within normal limits", "are normal", "appear normal", "are unremarkable"),
    ("osseous structures", "bony structures", "skeletal structures", "visualized bones"),
    ("pulmonary vascularity", "pulmonary vasculature"),
    ("focal airspace disease", "focal airspace opacity"),
    ("is seen", "is noted", "is identified", "is present", "is demonstrated"),
    ("are seen", "are noted", "are identified", "are present", "are demonstrated"),
    ("hyperinflated", "hyperexpanded", "overinflated"),
    ("hyperinflation", "hyperexpansion"),
    ("stable", "unchanged"),
    ("consistent with", "compatible with", "in keeping with"),
    ("in the interval", "since the prior study"),
)

# "The heart is mildly enlarged." <-> "There is mild cardiomegaly.": adverb -> adjective of the degree.
DEGREE_ADJECTIVES: dict[str, str] = {
    "minimally": "minimal",
    "slightly": "slight",
    "mildly": "mild",
    "moderately": "moderate",
    "markedly": "marked",
    "severely": "severe",
}
# The other way: adjective -> adverb ("marked" -> "markedly"), for a degree put on a predicate.
DEGREE_ADVERBS: dict[str, str] = {adjective: adverb for adverb, adjective in DEGREE_ADJECTIVES.items()}
