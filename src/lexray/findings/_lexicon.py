"""The chest X-ray lexicon: finding phrases, ConText modifiers, attribute words and section headers.

Everything the labeler knows about radiology language lives here as data, so that adding a synonym
or an abbreviation is a one-line change. Phrases are matched case-insensitively on spaCy tokens
(a phrase is tokenized like the text, so "s/p" or "x-ray" match as written); ``regex`` entries match
the raw text for constructions with gaps ("heart is mildly enlarged").
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Term:
    """One finding concept and the phrases that name it."""

    observation: str  # CheXpert name, or a finer finding name ("nodule")
    category: str | None  # CheXpert parent; None for findings outside the 14 classes
    phrases: tuple[str, ...] = ()  # literal phrases (case-insensitive, token-aligned)
    regexes: tuple[str, ...] = ()  # regular expressions over the text (case-insensitive)
    patterns: tuple[list[dict[str, object]], ...] = ()  # spaCy token patterns
    status: str | None = None  # fixed status for statements of normality ("heart size is normal")
    implied: dict[str, str] = field(default_factory=dict)  # attributes the phrase itself carries


def _pl(*words: str) -> tuple[str, ...]:
    """Each phrase plus its plural (last word + s, or es after s/x/ch/sh)."""
    out: list[str] = []
    for w in words:
        out.append(w)
        if w.endswith(("s", "x", "ch", "sh")):
            out.append(w + "es")
        elif w.endswith("y") and not w.endswith(("ay", "ey", "oy")):
            out.append(w[:-1] + "ies")
        else:
            out.append(w + "s")
    return tuple(out)


# A run of up to N characters inside one clause that does not deny the enlargement, e.g. the
# "and pulmonary vascularity appear" of "heart size and pulmonary vascularity appear normal".
_GAP = r"(?:(?!enlarg|large|increas|cardiomegaly|widen|[.;])[^\n]){0,45}?"
_ADV = r"(?:(?:xxxx|at|mildly|moderately|markedly|severely|slightly|minimally|massively|significantly|again|still|now|"
_ADV += r"borderline|at least|top normal|upper normal|stably)\s+)*"
_NORMAL = (
    r"\b(?:normal|nl|wnl|within (?:the )?normal limits|within (?:the )?limits of normal|unremarkable|not enlarged|"
    r"upper limits? of normal|top[- ]normal|upper normal|normal in size)\b"
)
_COPULA = r"(?:\s+(?:is|are|was|appears?|remains?|seems?|looks?))?\s+"

TERMS: tuple[Term, ...] = (
    # --- heart and mediastinum -------------------------------------------------------------
    Term(
        "Cardiomegaly",
        "Cardiomegaly",
        phrases=(
            "cardiomegaly",
            "enlarged heart",
            "heart enlargement",
            "cardiac enlargement",
            "enlarged cardiac silhouette",
            "enlarged cardiac shadow",
            "enlarged heart size",
            "increased heart size",
            "enlargement of the cardiac silhouette",
            "enlargement of the heart",
            "enlarged cardiac contour",
            "cardiac silhouette enlargement",
            "large heart",
            "globular heart",
            "cardiomegally",
        ),
        regexes=(
            r"\b(?:heart|heart size|cardiac size|cardiac silhouette|cardiac shadow|cardiac contours?|"
            r"cardiac silhouette size)" + _COPULA + _ADV + r"(?:enlarged|large|increased)\b",
            # cardiothoracic ratio above one half
            # "borderline" is kept as a severity: Open-i's indexers code "Cardiomegaly/borderline"
            r"\bborderline (?:enlarged )?(?:heart|cardiac|cardiac silhouette) size\b",
            r"\b(?:heart|heart size|cardiac silhouette|cardiac silhouette size)"
            + _COPULA
            + r"borderline(?: enlarged| in size)?\b",
            r"\b(?:ctr|cardiothoracic ratio)\s*(?:of|is|=|>|:|measures)?\s*(?:0?\.(?:5[1-9]|[6-9])\d*|(?:5[1-9]|[6-9]\d)\s*%)",
        ),
    ),
    Term(
        "Cardiomegaly",
        "Cardiomegaly",
        regexes=(
            r"\b(?:heart|heart size|cardiac size|cardiac silhouette|cardiac shadow|cardiac contours?)"
            + _GAP
            + _NORMAL,
            r"\b(?:normal|nl)(?: sized?)? (?:heart|cardiac silhouette|cardiac size|cardiac contours?)\b(?: size)?",
            r"\b(?:ctr|cardiothoracic ratio)\s*(?:of|is|=|<|:|measures)?\s*(?:0?\.(?:[0-4]\d*|50*)\b|(?:[0-4]\d|50)\s*%)",
        ),
        status="negative",
    ),
    Term(
        "Enlarged Cardiomediastinum",
        "Enlarged Cardiomediastinum",
        phrases=(
            "widened mediastinum",
            "mediastinal widening",
            "widening of the mediastinum",
            "enlarged cardiomediastinal silhouette",
            "cardiomediastinal enlargement",
            "mediastinal enlargement",
            "enlarged mediastinum",
            "enlarged mediastinal silhouette",
            *_pl("mediastinal mass"),
            "widened mediastinal silhouette",
            "enlarged cardiomediastinal contours",
        ),
        regexes=(
            r"\b(?:cardiomediastinal silhouette|cardiomediastinal contours?|mediastinum|mediastinal contours?|"
            r"mediastinal silhouette)" + _COPULA + _ADV + r"(?:enlarged|widened|wide)\b",
        ),
    ),
    Term(
        "Enlarged Cardiomediastinum",
        "Enlarged Cardiomediastinum",
        regexes=(
            r"\b(?:cardiomediastinal silhouette|cardiomediastinal contours?|cardio mediastinal silhouette|"
            r"mediastinum|mediastinal contours?|mediastinal silhouette)" + _GAP + _NORMAL,
            r"\b(?:normal|nl) (?:cardiomediastinal|mediastinal) (?:silhouette|contours?)\b",
        ),
        status="negative",
    ),
    # --- lung parenchyma ---------------------------------------------------------------------
    Term(
        "opacity",
        "Lung Opacity",
        phrases=(
            *_pl(
                "opacity",
                "interstitial opacity",
                "streakiness",
                "airspace opacity",
                "air space opacity",
                "opacification",
                "parenchymal opacity",
            ),
            "opacified",
            "opacifications",
            *_pl("airspace disease", "air space disease", "airspace process", "air space process"),
            "airspace",
            *_pl("density", "haziness", "hazy opacity", "shadowing"),
            "increased markings",
            *_pl("alveolar opacity", "reticular opacity", "reticulonodular opacity"),
        ),
    ),
    Term(
        "infiltrate",
        "Lung Opacity",
        phrases=(*_pl("infiltrate", "infiltration", "interstitial infiltrate"), "infiltrative"),
    ),
    Term(
        "ground-glass opacity",
        "Lung Opacity",
        phrases=(*_pl("ground-glass opacity", "ground glass opacity", "ggo"), "ground-glass", "ground glass"),
    ),
    Term(
        "Consolidation",
        "Consolidation",
        phrases=(
            *_pl(
                "consolidation", "airspace consolidation", "air space consolidation", "consolidative opacity"
            ),
            "consolidative",
            "consolidated",
            "consol",
            *_pl("air bronchogram"),
        ),
    ),
    Term(
        "Pneumonia",
        "Pneumonia",
        phrases=(
            *_pl("pneumonia", "bronchopneumonia", "pneumonitis", "infectious process", "pna"),
            "infection",
            "infectious",
            "aspiration pneumonia",
            "pneumonic",
        ),
    ),
    Term(
        "Atelectasis",
        "Atelectasis",
        phrases=(
            "atelectasis",
            "atelectases",
            "atelectatic",
            "atelectatic change",
            "atelectatic changes",
            "atx",
            *_pl("collapse"),
            "subsegmental atelectasis",
            "platelike atelectasis",
            "plate-like atelectasis",
        ),
    ),
    Term(
        "Edema",
        "Edema",
        phrases=(
            "edema",
            "oedema",
            *_pl(
                "vascular congestion",
                "pulmonary congestion",
                "venous congestion",
                "congestion",
                "congestive heart failure",
                "heart failure",
                "chf",
                "fluid overload",
                "kerley b line",
                "kerley line",
            ),
            "cephalization",
            "pulmonary venous hypertension",
            "interstitial edema",
            "vascular engorgement",
            "septal lines",
        ),
    ),
    # Prominent pulmonary vessels: Open-i codes them "Pulmonary Congestion", CheXpert counts congestion
    # as edema.
    Term(
        "vascular congestion",
        "Edema",
        phrases=(
            *_pl(
                "vascular prominence",
                "central vascular prominence",
                "pulmonary vascular prominence",
                "prominent pulmonary vasculature",
                "prominent central pulmonary vasculature",
                "prominent central vasculature",
                "prominence of the pulmonary vasculature",
                "prominence of the central pulmonary vasculature",
                "prominence of the central vasculature",
                "increased pulmonary vascularity",
                "increased lung vascularity",
                "increased vascularity",
                "indistinct vascular margination",
                "vascular redistribution",
                "pulmonary vascular redistribution",
            ),
        ),
        regexes=(
            r"\b(?:pulmonary |central |lung )+(?:vascularity|vasculature|vessels)(?:\s+(?:is|are|appears?|remains?))?"
            r"\s+(?:(?:mildly|moderately|slightly|again|still)\s+)*(?:prominent|increased|engorged|congested|indistinct)\b",
        ),
    ),
    Term(
        "Edema",
        "Edema",
        regexes=(
            r"\b(?:(?:pulmonary|pulm) )?(?:vascularity|vasculature|vasc|vascular engorgement|vascular markings|vessels)"
            + _GAP
            + _NORMAL,
            r"\b(?:normal|nl) (?:pulmonary|pulm) (?:vascularity|vasculature|vasc)\b",
        ),
        status="negative",
    ),
    Term("soft tissue edema", None, phrases=("soft tissue edema", "subcutaneous edema")),
    Term(
        "nodule",
        "Lung Lesion",
        phrases=(
            *_pl(
                "nodule", "micronodule", "nodularity", "calcified nodule", "dense nodule", "pulmonary nodule"
            ),
            "fibronodular",
            "reticulonodular",
            "reticular-nodular",
            "reticulonodular changes",
        ),
    ),
    # Open-i's indexers code "nodular opacity" as a round opacity, not a nodule: the radiologist has
    # not called it a nodule yet.
    Term(
        "nodular opacity",
        "Lung Opacity",
        phrases=(
            *_pl("nodular opacity", "nodular density", "nodular opacification"),
            "nodular densities",
            "nodular opacities",
        ),
    ),
    Term(
        "mass",
        "Lung Lesion",
        phrases=(
            *_pl(
                "mass", "lung mass", "pulmonary mass", "hilar mass", "masslike opacity", "mass-like opacity"
            ),
        ),
    ),
    Term(
        "lesion",
        "Lung Lesion",
        phrases=(
            *_pl("lesion", "tumor", "neoplasm", "carcinoma", "malignancy", "cavitary lesion", "metastasis"),
            "metastases",
            "metastatic disease",
            "cavitation",
        ),
    ),
    # --- pleura ----------------------------------------------------------------------------------
    Term(
        "Pneumothorax",
        "Pneumothorax",
        phrases=(
            "pneumothorax",
            "pneumothoraces",
            "pneumothoraxes",
            "ptx",
            *_pl("hydropneumothorax"),
            "hydropneumothoraces",
        ),
    ),
    Term(
        "Pleural Effusion",
        "Pleural Effusion",
        phrases=(
            *_pl("effusion", "pleural effusion", "eff", "parapneumonic effusion", "loculated effusion"),
            "pleural fluid",
            "hydrothorax",
            *_pl("subpulmonic effusion", "fluid collection"),
            "fluid in the fissure",
        ),
    ),
    # Blunting names a sign, not a diagnosis (effusion, scarring or thickening); Open-i's indexers code
    # it apart from effusion.
    Term(
        "blunting of the costophrenic angle",
        None,
        phrases=(
            "blunting of the costophrenic angle",
            "blunting of the costophrenic angles",
            "blunting of the right costophrenic angle",
            "blunting of the left costophrenic angle",
            "blunting of both costophrenic angles",
            "blunting of the costophrenic sulcus",
            "blunting of the costophrenic sulci",
            "costophrenic angle blunting",
            "costophrenic blunting",
            *_pl("blunted costophrenic angle"),
            "blunting",
            "blunted",
        ),
    ),
    Term(
        "extrapulmonary mass",
        None,
        phrases=(
            *_pl(
                "thyroid mass",
                "chest wall mass",
                "soft tissue mass",
                "breast mass",
                "neck mass",
                "abdominal mass",
                "goiter",
            ),
        ),
    ),
    Term(
        "bone lesion",
        None,
        phrases=(
            *_pl(
                "sclerotic lesion",
                "lytic lesion",
                "bony lesion",
                "bone lesion",
                "osseous lesion",
                "expansile lesion",
            ),
            *_pl("lucent lesion", "blastic lesion", "osteolytic lesion", "osteoblastic lesion"),
        ),
    ),
    Term("pericardial effusion", None, phrases=(*_pl("pericardial effusion"),)),
    Term(
        "Pleural Other",
        "Pleural Other",
        phrases=(
            *_pl(
                "pleural thickening",
                "pleural plaque",
                "pleural scarring",
                "pleural calcification",
                "fibrothorax",
                "pleural-parenchymal scarring",
                "pleuroparenchymal scarring",
                "pleural parenchymal scarring",
                "pleural reaction",
            ),
            "thickened pleura",
        ),
    ),
    Term(
        "Pleural Other",
        "Pleural Other",
        phrases=_pl("apical pleural thickening", "apical cap", "apical pleural cap"),
        implied={"location": "apex"},
    ),
    # --- bones -----------------------------------------------------------------------------------
    Term(
        "Fracture",
        "Fracture",
        phrases=(
            *_pl("fracture", "fracture deformity"),
            "fractured",
        ),
        patterns=([{"LOWER": {"IN": ["fx", "fxs", "fx."]}}],),
    ),
    # the site is part of the phrase
    Term("Fracture", "Fracture", phrases=_pl("rib fracture", "rib fx"), implied={"location": "rib"}),
    Term(
        "Fracture",
        "Fracture",
        phrases=_pl("compression fracture", "vertebral fracture", "vertebral body fracture"),
        implied={"location": "spine"},
    ),
    # --- devices ---------------------------------------------------------------------------------
    Term(
        "pacemaker",
        "Support Devices",
        phrases=(
            *_pl(
                "pacemaker",
                "pacer",
                "pacemaker lead",
                "pacer lead",
                "pacing lead",
                "pacemaker wire",
                "pacer wire",
                "aicd",
                "icd",
                "defibrillator",
                "pacemaker/aicd",
                "pacemaker/defibrillator",
                "cardiac device",
                "cardiac pacemaker",
                "loop recorder",
                "generator",
            ),
        ),
    ),
    Term(
        "sternotomy wires",
        "Support Devices",
        phrases=(
            *_pl("sternotomy wire", "sternal wire", "sternal suture", "sternotomy suture", "cerclage wire"),
            "median sternotomy",
            "sternotomy",
            "cabg",
            "coronary artery bypass grafting",
            "coronary artery bypass graft",
            "wires",
        ),
    ),
    Term(
        "central venous catheter",
        "Support Devices",
        phrases=(
            *_pl(
                "central venous catheter",
                "central line",
                "central catheter",
                "cvc",
                "picc",
                "picc line",
                "port",
                "port-a-cath",
                "portacath",
                "power port",
                "mediport",
                "dialysis catheter",
                "swan-ganz catheter",
                "catheter",
                "venous catheter",
                "midline catheter",
                "tunneled catheter",
                "ij line",
                "subclavian line",
            ),
        ),
    ),
    Term(
        "stimulator",
        "Support Devices",
        phrases=(
            *_pl(
                "neurostimulator",
                "stimulator",
                "spinal stimulator",
                "nerve stimulator",
                "vagal nerve stimulator",
            ),
            *_pl("shunt", "vp shunt", "shunt tubing", "ventriculoperitoneal shunt", "bone anchor"),
            "prosthetic",
        ),
        # TIPS (transjugular intrahepatic portosystemic shunt) only in capitals: "tips" is an ordinary word.
        regexes=(r"(?-i:\bTIPS\b)",),
    ),
    # Open-i redacts many device names to "XXXX"; the device survives in "right chest XXXX tip ...".
    Term(
        "central venous catheter",
        "Support Devices",
        regexes=(
            r"\b(?:chest|jugular|subclavian|arm|extremity|ij|port)\s+XXXX(?:\s+XXXX)?\s+(?:with\s+(?:its\s+|the\s+)?"
            r"(?:distal\s+)?)?tip\b",
            r"\bsurgical\s+XXXX\b",
        ),
    ),
    Term(
        "endotracheal tube",
        "Support Devices",
        phrases=(
            *_pl("endotracheal tube", "et tube", "ett", "tracheostomy tube", "tracheostomy", "trach tube"),
        ),
    ),
    Term(
        "enteric tube",
        "Support Devices",
        phrases=(
            *_pl("nasogastric tube", "ng tube", "og tube", "orogastric tube", "feeding tube", "enteric tube"),
            *_pl("dobhoff", "dobhoff tube", "gastrostomy tube", "g-tube"),
        ),
    ),
    Term(
        "chest tube",
        "Support Devices",
        phrases=(
            *_pl("chest tube", "thoracostomy tube", "pigtail catheter", "pleural catheter", "drain", "tube"),
        ),
    ),
    Term(
        "surgical clips",
        "Support Devices",
        phrases=(
            *_pl(
                "surgical clip",
                "clip",
                "staple",
                "surgical staple",
                "suture",
                "suture line",
                "surgical suture",
            ),
            "suture material",
            "sutures",
            "cholecystectomy clips",
        ),
    ),
    Term(
        "stent",
        "Support Devices",
        phrases=(
            *_pl("stent", "coronary stent", "endovascular stent", "stent graft", "filter", "ivc filter"),
        ),
    ),
    Term(
        "prosthetic valve",
        "Support Devices",
        phrases=(
            *_pl(
                "prosthetic valve",
                "valve replacement",
                "mechanical valve",
                "annuloplasty ring",
                "annuloplasty",
            ),
            "avr",
            "mvr",
            "valve prosthesis",
        ),
    ),
    Term(
        "hardware",
        "Support Devices",
        phrases=(
            "hardware",
            "orthopedic hardware",
            "surgical hardware",
            "fixation hardware",
            "fusion hardware",
            *_pl("screw", "fixation plate", "fixation rod", "surgical plate", "prosthesis", "arthroplasty"),
            *_pl(
                "device",
                "medical device",
                "support device",
                "lead",
                "monitoring lead",
                "ekg lead",
                "ecg lead",
            ),
            "telemetry leads",
        ),
    ),
    # --- findings outside the 14 classes (they make a report abnormal: "No Finding" turns negative) --
    Term(
        "granuloma",
        None,
        phrases=(
            *_pl("granuloma", "calcified granuloma", "granulomatous disease"),
            "granulomatous",
            "granulomata",
            "calcified lymph nodes",
            "calcified hilar lymph nodes",
            "calcified mediastinal lymph nodes",
            "calcified hilar nodes",
        ),
    ),
    Term(
        "degenerative changes",
        None,
        phrases=(
            *_pl(
                "degenerative change", "degenerative disease", "osteophyte", "spondylosis", "osteoarthritis"
            ),
            "degenerative",
            "arthritis",
            "arthritic changes",
            "degenerative disc disease",
            "spurring",
            "dish",
            *_pl("syndesmophyte"),
        ),
    ),
    Term(
        "scoliosis",
        None,
        phrases=(
            *_pl(
                "scoliosis",
                "dextroscoliosis",
                "levoscoliosis",
                "dextrocurvature",
                "levocurvature",
                "curvature",
            ),
            "scoliotic",
            "dextro curvature",
            "levo curvature",
        ),
    ),
    Term("kyphosis", None, phrases=("kyphosis", "kyphotic", "exaggerated kyphosis")),
    Term(
        "deformity", None, phrases=(*_pl("deformity", "compression deformity", "wedge deformity"), "wedging")
    ),
    Term(
        "emphysema",
        None,
        phrases=(
            "emphysema",
            "emphysematous",
            "emphysematous changes",
            "copd",
            "chronic obstructive pulmonary disease",
            "bullous disease",
            *_pl("bulla", "bleb"),
            "bullae",
        ),
    ),
    Term(
        "hyperinflation",
        None,
        phrases=(
            "hyperinflation",
            "hyperinflated",
            "hyperexpanded",
            "hyperexpansion",
            "hyperaeration",
            "hyperaerated",
            "overinflation",
            "overinflated",
            "hyperlucent",
            "hyperlucency",
            "flattened diaphragms",
            "flattening of the diaphragms",
            "flattening of the hemidiaphragms",
            "flattened hemidiaphragms",
            "increased lung volumes",
            "large lung volumes",
            "hyperinflation of the lungs",
        ),
    ),
    Term(
        "low lung volumes",
        None,
        phrases=(
            *_pl(
                "low lung volume",
                "low volume",
                "decreased lung volume",
                "diminished lung volume",
                "reduced lung volume",
            ),
            "hypoinflation",
            "hypoinflated",
            "hypoventilation",
            "hypoventilatory",
            "poor inspiration",
            "poor inspiratory effort",
            "shallow inspiration",
            "low inspiratory volumes",
            "underinflation",
            "underinflated",
            "hypoventilated",
            "lower lung volumes",
        ),
        regexes=(
            r"\blung volumes (?:are |is |appear |remain )+(?:\w+ )?(?:low|decreased|diminished|reduced)\b",
        ),
    ),
    Term(
        "calcification",
        None,
        phrases=(
            *_pl(
                "calcification",
                "aortic calcification",
                "vascular calcification",
                "atherosclerotic calcification",
            ),
            "atherosclerosis",
            "atherosclerotic",
            "atherosclerotic disease",
            "calcified",
            "calcinosis",
            "calcified aorta",
            "aortic atherosclerosis",
        ),
    ),
    Term(
        "tortuous aorta",
        None,
        phrases=(
            "tortuous aorta",
            "tortuous thoracic aorta",
            "tortuosity",
            "aortic tortuosity",
            "tortuous",
            "ectatic",
            "ectasia",
            "unfolding",
            "unfolded",
            "aortic ectasia",
            "aneurysm",
            "aneurysmal",
            "dilated aorta",
            "aortic dilatation",
            "aortic enlargement",
        ),
    ),
    Term("hiatal hernia", None, phrases=(*_pl("hiatal hernia", "hiatus hernia", "hernia"),)),
    Term(
        "scarring",
        None,
        phrases=(
            "scarring",
            *_pl("scar", "fibrosis", "fibrotic change", "fibrotic scarring", "parenchymal scarring"),
            "fibrotic",
            "cicatrix",
            "chronic scarring",
            "chronic changes",
        ),
    ),
    Term(
        "interstitial markings",
        None,
        phrases=(
            *_pl(
                "interstitial marking",
                "interstitial prominence",
                "interstitial pattern",
                "interstitial change",
                "interstitial lung disease",
                "interstitial disease",
                "interstitial thickening",
                "reticular marking",
                "bronchovascular marking",
                "lung marking",
                "pulmonary marking",
            ),
            "interstitial",
            "coarsened interstitial markings",
            "coarse interstitial markings",
            "coarsening",
            "chronic interstitial changes",
            "chronic lung disease",
            "chronic interstitial lung disease",
        ),
    ),
    Term(
        "bronchial thickening",
        None,
        phrases=(
            "bronchial wall thickening",
            "peribronchial thickening",
            "peribronchial cuffing",
            "bronchitis",
            "bronchiectasis",
            "airway disease",
            "reactive airway disease",
            "bronchitic changes",
        ),
    ),
    Term(
        "elevated hemidiaphragm",
        None,
        phrases=(
            "elevated hemidiaphragm",
            "elevation of the hemidiaphragm",
            "elevation of the right hemidiaphragm",
            "elevation of the left hemidiaphragm",
            "elevated right hemidiaphragm",
            "elevated left hemidiaphragm",
            "eventration",
            "diaphragmatic eventration",
            "elevated diaphragm",
            "paralysis",
        ),
    ),
    Term(
        "lymphadenopathy",
        None,
        phrases=(
            "lymphadenopathy",
            "adenopathy",
            "hilar adenopathy",
            "mediastinal adenopathy",
            *_pl("enlarged lymph node", "enlarged node", "hilar enlargement"),
            "hilar prominence",
            "prominent hila",
            "prominent hilum",
            "enlarged hila",
        ),
    ),
    Term(
        "pneumoperitoneum",
        None,
        phrases=(
            "pneumoperitoneum",
            "free air",
            "free intraperitoneal air",
            "pneumomediastinum",
            "subcutaneous emphysema",
        ),
    ),
    Term(
        "foreign body",
        None,
        phrases=(
            *_pl(
                "foreign body",
                "piercing",
                "nipple ring",
                "body piercing",
                "breast implant",
                "bullet fragment",
            ),
            "foreign bodies",
            "bullet",
            "shrapnel",
            "jewelry",
        ),
    ),
    Term("volume loss", None, phrases=("volume loss", "loss of volume")),
    Term(
        "bronchovascular crowding",
        None,
        phrases=("bronchovascular crowding", "crowding of the bronchovascular markings"),
    ),
    Term("cardiac aneurysm", None, phrases=("ventricular aneurysm",)),
    Term(
        "surgical changes",
        None,
        phrases=(
            "lobectomy",
            "pneumonectomy",
            "mastectomy",
            "thoracotomy",
        ),
    ),
    Term("azygos lobe", None, phrases=("azygos lobe", "azygos fissure")),
    Term(
        "osteopenia",
        None,
        phrases=("osteopenia", "osteopenic", "demineralization", "demineralized", "osteoporosis"),
    ),
    Term(
        "pulmonary hypertension",
        None,
        phrases=(
            "pulmonary arterial hypertension",
            "pulmonary artery hypertension",
            "enlarged pulmonary arteries",
            "pulmonary hypertension",
        ),
    ),
    # --- statements of normal lungs (negative opacity) ---------------------------------------------
    Term(
        "opacity",
        "Lung Opacity",
        regexes=(
            r"\b(?:lungs?|lung fields?|both lungs)(?:\s+(?:are|is|appear|remain))?(?:\s+(?:otherwise|again|now|grossly|(?:well[- ])?(?:expanded|aerated|inflated)\s+and))?"
            r"\s+clear\b",
            r"\bclear lungs?\b",
        ),
        status="negative",
    ),
)


@dataclass(frozen=True)
class ContextRule:
    """A ConText modifier: a cue phrase, what it asserts and which way its scope runs."""

    literal: str  # the cue as written (also its phrase when ``pattern`` is None)
    category: str  # NEGATED_EXISTENCE | POSSIBLE_EXISTENCE | HYPOTHETICAL | PSEUDO | TERMINATE
    direction: str  # FORWARD | BACKWARD | BIDIRECTIONAL | TERMINATE | PSEUDO
    max_scope: int | None = None  # tokens the scope may reach (None: to the sentence edge)
    pattern: list[dict[str, object]] | None = None  # spaCy token pattern instead of the literal


NEG, POSS, HYPO = "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "HYPOTHETICAL"

# Uncertainty cues that link a sign to its interpretation ("opacity concerning for pneumonia"). After a
# negation of the sign ("no consolidation concerning for pneumonia") the negation governs.
EVIDENTIAL_CUES: frozenset[str] = frozenset(
    {"concerning for", "concern for", "suggestive of", "suggest", "suggests", "suggesting", "suspicious for"}
    | {"worrisome for", "compatible with", "consistent with", "to suggest"}
)
_F, _B, _BI = "FORWARD", "BACKWARD", "BIDIRECTIONAL"

CONTEXT_RULES: tuple[ContextRule, ...] = (
    # negation, forward
    *(
        ContextRule(cue, NEG, _F)
        for cue in (
            "no",
            "not",
            "without",
            "negative for",
            "free of",
            "clear of",
            "no evidence of",
            "no signs of",
            "no sign of",
            "no findings of",
            "no findings to suggest",
            "no radiographic evidence of",
            "no xxxx of",
            "there is no",
            "there are no",
            "there is no evidence of",
            "absence of",
            "absent",
            "resolution of",
            "removal of",
            "no definite",
            "no definitive",
            "no convincing",
            "no obvious",
            "no significant",
            "no acute",
            "no focal",
            "no new",
            "no visible",
            "no visualized",
            "no large",
            "no residual",
            "nor",
            "neither",
            "never",
            "without evidence of",
            "rather than",
            "nothing to suggest",
            "not seen",
            "w/o",
            "neg for",
            "nad",
        )
    ),
    # negation, backward ("pneumothorax is not seen")
    *(
        ContextRule(cue, NEG, _B, max_scope=8)
        for cue in (
            "is not seen",
            "are not seen",
            "not identified",
            "not visualized",
            "not appreciated",
            "not present",
            "is absent",
            "are absent",
            "has resolved",
            "have resolved",
            "resolved",
            "is resolved",
            "has been removed",
            "have been removed",
            "removed",
            "is excluded",
            "ruled out",
            "has cleared",
            "have cleared",
            "is negative",
            "not demonstrated",
            "not evident",
            "are not identified",
            "is not identified",
            "not definitely seen",
            "no longer seen",
            "no longer visualized",
            "no longer visible",
            "no longer present",
            "no longer identified",
        )
    ),
    # uncertainty
    *(
        ContextRule(cue, POSS, _F, max_scope=10)
        for cue in (
            "possible",
            "possibly",
            "possibility of",
            "may",
            "may represent",
            "may be",
            "might",
            "could",
            "could represent",
            "could be",
            "cannot exclude",
            "can not exclude",
            "cannot rule out",
            "can not rule out",
            "questionable",
            "question of",
            "suspicious for",
            "suspected",
            "suspect",
            "concerning for",
            "worrisome for",
            "concern for",
            "suggestive of",
            "suggesting",
            "suggest",
            "suggests",
            "likely",
            "most likely",
            "probable",
            "probably",
            "presumably",
            "presumed",
            "versus",
            "vs",
            "vs.",
            "differential",
            "differential diagnosis includes",
            "consider",
            "equivocal",
            "indeterminate",
            "uncertain",
            "can't exclude",
            "r/o",
            "rule out",
            "may reflect",
            "could reflect",
            "favor",
            "favored",
            "?",
            "difficult to exclude",
        )
    ),
    *(
        ContextRule(cue, POSS, _B, max_scope=8)
        for cue in (
            "cannot be excluded",
            "can not be excluded",
            "not excluded",
            "is not excluded",
            "cannot be ruled out",
            "not ruled out",
            "is possible",
            "is suspected",
            "is questioned",
            "are not excluded",
            "can't be excluded",
            "is likely",
            "not entirely excluded",
            "cannot be completely excluded",
            "cannot be entirely excluded",
            "is favored",
            "is less likely",
            "less likely",
            "is considered",
        )
    ),
    ContextRule("than", POSS, _F, max_scope=3),  # "spurring more likely than metastasis"
    # "no effusion seen, small nodule": a negation ends at "seen," / "identified," but not at
    # "no ... or identified mass", so only with the comma
    ContextRule(
        "seen/identified + comma",
        "TERMINATE",
        "TERMINATE",
        pattern=[
            {"LOWER": {"IN": ["seen", "identified", "noted", "demonstrated", "present"]}},
            {"TEXT": ","},
        ],
    ),
    ContextRule("exclude", HYPO, _F, max_scope=4),  # "follow-up to ... exclude an underlying mass"
    # hypothetical: follow-up advice names a finding without asserting it
    *(
        ContextRule(cue, HYPO, _F, max_scope=10)
        for cue in (
            "evaluate for",
            "evaluation for",
            "assess for",
            "to exclude",
            "to evaluate",
            "if",
            "should",
            "recommend",
            "screening for",
            "follow-up to",
        )
    ),
    *(
        ContextRule(cue, HYPO, _B, max_scope=6)
        for cue in (
            "may not be demonstrated",
            "may not be visible",
            "may not be seen",
            "may be occult",
            "can be occult",
        )
    ),
    # phrases that look like a cue but are not one
    *(
        ContextRule(cue, "PSEUDO", "PSEUDO")
        for cue in (
            "to suggest",  # "no opacity to suggest pneumonia": the negation governs
            "no change",
            "no significant change",
            "no interval change",
            "not changed",
            "no increase",
            "no significant interval change",
            "without change",
            "without significant change",
            "without interval change",
            "not significantly changed",
            "no longer",
            "not only",
            "not certain whether",
            "no substantial change",
            "no appreciable change",
            "no definite change",
            "not well seen",
            "not well visualized",
            "gram negative",
            "without difficulty",
            "no xxxx change",
            "no evidence of change",
            "may be related to",
            "likely related to",
            "consistent with prior",
            "not significantly",
            "not been",
            "not imaged",
            "no previous",
            "no prior",
            "no comparison",
            "not included",
            "not clearly",
        )
    ),
    # scope ends
    *(
        ContextRule(cue, "TERMINATE", "TERMINATE")
        for cue in (
            "but",
            "however",
            "although",
            "though",
            "which",
            "aside from",
            "apart from",
            "except",
            "except for",
            "other than",
            "otherwise",
            "there is",
            "there are",
            "there has been",
            "there may be",
            "with",
            "yet",
            "while",
            "whereas",
            "since",
            "noted",
            "also",
            "is seen",
            "are seen",
            "is present",
            "are present",
            "is noted",
            "are noted",
            "which is",
            "given",
            "status post",
            "s/p",
            "in the setting of",
        )
    ),
)

# Attribute words. Keys are phrases (case-insensitive, token-aligned); values the normalised attribute.
# An entry may set several attributes at once ("bibasilar" = bilateral + base, "RLL" = right + lower lobe).
LATERALITY: dict[str, str] = {
    "right": "right",
    "left": "left",
    "right-sided": "right",
    "left-sided": "left",
    "right sided": "right",
    "left sided": "left",
    "rt": "right",
    "lt": "left",
    "bilateral": "bilateral",
    "bilaterally": "bilateral",
    "both": "bilateral",
    "bilat": "bilateral",
    "right greater than left": "bilateral",
    "left greater than right": "bilateral",
    "right more than left": "bilateral",
    "left more than right": "bilateral",
    "right larger than left": "bilateral",
    "left larger than right": "bilateral",
    "r>l": "bilateral",
    "l>r": "bilateral",
    "right > left": "bilateral",
    "left > right": "bilateral",
    "right and left": "bilateral",
    "left and right": "bilateral",
}

LOCATION: dict[str, str] = {
    "upper lobe": "upper lobe",
    "upper lobes": "upper lobe",
    "middle lobe": "middle lobe",
    "lower lobe": "lower lobe",
    "lower lobes": "lower lobe",
    "lingula": "lingula",
    "lingular": "lingula",
    "base": "base",
    "bases": "base",
    "basilar": "base",
    "basal": "base",
    "lung base": "base",
    "lung bases": "base",
    "apex": "apex",
    "apices": "apex",
    "apical": "apex",
    "apicies": "apex",
    "upper zone": "upper zone",
    "upper lung zone": "upper zone",
    "upper lung": "upper zone",
    "upper lungs": "upper zone",
    "mid zone": "mid zone",
    "midlung": "mid zone",
    "mid lung": "mid zone",
    "mid lung zone": "mid zone",
    "midlung zone": "mid zone",
    "lower zone": "lower zone",
    "lower lung": "lower zone",
    "lower lungs": "lower zone",
    "lower lung zone": "lower zone",
    "perihilar": "perihilar",
    "hilar": "hilum",
    "hilum": "hilum",
    "hila": "hilum",
    "suprahilar": "perihilar",
    "infrahilar": "perihilar",
    "retrocardiac": "retrocardiac",
    "costophrenic angle": "costophrenic angle",
    "costophrenic angles": "costophrenic angle",
    "costophrenic": "costophrenic angle",
    "periphery": "periphery",
    "peripheral": "periphery",
    "subpleural": "periphery",
    "fissure": "fissure",
    "minor fissure": "fissure",
    "major fissure": "fissure",
    "hemithorax": "hemithorax",
    "lung": None,  # a bare "lung" names no zone but must not break attachment
    "rib": "rib",
    "ribs": "rib",
    "posterior rib": "rib",
    "anterior rib": "rib",
    "lateral rib": "rib",
    "clavicle": "clavicle",
    "clavicular": "clavicle",
    "humerus": "humerus",
    "humeral": "humerus",
    "sternum": "sternum",
    "sternal": "sternum",
    "scapula": "scapula",
    "scapular": "scapula",
    "vertebral body": "spine",
    "vertebral": "spine",
    "vertebra": "spine",
    "spine": "spine",
    "thoracic spine": "spine",
    "shoulder": "shoulder",
}
LOCATION = {k: v for k, v in LOCATION.items() if v is not None}

# Phrases that carry both a side and a zone.
SITE: dict[str, tuple[str, str]] = {
    "rll": ("right", "lower lobe"),
    "rml": ("right", "middle lobe"),
    "rul": ("right", "upper lobe"),
    "lll": ("left", "lower lobe"),
    "lul": ("left", "upper lobe"),
    "bibasilar": ("bilateral", "base"),
    "bibasal": ("bilateral", "base"),
    "bibasally": ("bilateral", "base"),
    "bi-basilar": ("bilateral", "base"),
    "biapical": ("bilateral", "apex"),
    "bi-apical": ("bilateral", "apex"),
    "bilateral lower lobes": ("bilateral", "lower lobe"),
    "bilateral upper lobes": ("bilateral", "upper lobe"),
    "bilateral bases": ("bilateral", "base"),
    "both bases": ("bilateral", "base"),
    "bilateral apices": ("bilateral", "apex"),
    "both apices": ("bilateral", "apex"),
    "lingula": ("left", "lingula"),
    "lingular": ("left", "lingula"),
}

SEVERITY: dict[str, str] = {
    "trace": "trace",
    "tiny": "tiny",
    "small": "small",
    "smaller": "small",
    "minimal": "minimal",
    "minimally": "minimal",
    "minor": "minimal",
    "mild": "mild",
    "mildly": "mild",
    "slight": "mild",
    "slightly": "mild",
    "moderate": "moderate",
    "moderately": "moderate",
    "moderate-sized": "moderate",
    "moderate sized": "moderate",
    "large": "large",
    "larger": "large",
    "massive": "large",
    "severe": "severe",
    "severely": "severe",
    "marked": "severe",
    "markedly": "severe",
    "extensive": "extensive",
    "significant": "moderate",
    "small to moderate": "small to moderate",
    "small-to-moderate": "small to moderate",
    "moderate to large": "moderate to large",
    "mild to moderate": "mild to moderate",
    "moderate to severe": "moderate to severe",
    "borderline": "borderline",
    "subtle": "subtle",
    "faint": "subtle",
    "patchy": None,  # shape words: not a severity, but they sit between a finding and its severity
    "streaky": None,
    "linear": None,
    "focal": None,
}
SEVERITY = {k: v for k, v in SEVERITY.items() if v is not None}

CHRONICITY: dict[str, str] = {
    "acute": "acute",
    "subacute": "subacute",
    "chronic": "chronic",
    "chronically": "chronic",
    "old": "old",
    "remote": "old",
    "healed": "healed",
    "healing": "healing",
    "new": "new",
    "newly": "new",
    "recent": "new",
    "interval development": "new",
    "developing": "new",
    "stable": "stable",
    "stably": "stable",
    "unchanged": "stable",
    "grossly unchanged": "stable",
    "no change": "stable",
    "no significant change": "stable",
    "no interval change": "stable",
    "not changed": "stable",
    "again seen": "stable",
    "again noted": "stable",
    "again demonstrated": "stable",
    "redemonstrated": "stable",
    "re-demonstrated": "stable",
    "persistent": "persistent",
    "persistently": "persistent",
    "persists": "persistent",
    "persisting": "persistent",
    "residual": "persistent",
    "improved": "improved",
    "improving": "improved",
    "decreased": "improved",
    "decreasing": "improved",
    "diminished": "improved",
    "worsened": "worsened",
    "worsening": "worsened",
    "increased": "worsened",
    "increasing": "worsened",
    "progressed": "worsened",
    "progression": "worsened",
    "enlarging": "worsened",
    "resolved": "resolved",
    "resolving": "resolved",
    "resolution": "resolved",
    "cleared": "resolved",
    "removed": "resolved",
    # chronicity nouns reach their finding through "of"/"in" ("resolution of the left effusion")
    "resolution of": "resolved",
    "interval resolution of": "resolved",
    "clearing of": "resolved",
    "removal of": "resolved",
    "development of": "new",
    "interval development of": "new",
    "progression of": "worsened",
    "worsening of": "worsened",
    "increase in": "worsened",
    "increased size of": "worsened",
    "improvement in": "improved",
    "improvement of": "improved",
    "decrease in": "improved",
    "s/p": "post-procedural",
    "status post": "post-procedural",
    "postoperative": "post-procedural",
    "post-operative": "post-procedural",
    "postsurgical": "post-procedural",
    "post-surgical": "post-procedural",
    "prior": "old",
}

# Words that end an attribute's reach: an attribute does not cross them to reach a finding.
ATTRIBUTE_BARRIERS: frozenset[str] = frozenset(
    {
        ",",
        ";",
        ":",
        ".",
        "and",
        "or",
        "but",
        "with",
        "without",
        "no",
        "not",
        "which",
        "however",
        "while",
        "although",
        "versus",
        "vs",
        "vs.",
        "/",
        "than",
        "(",
        ")",
    }
)

# Words a premodifier does not cross to reach the finding after it (verbs, prepositions, determiners
# that open a new phrase): "left base may represent atelectasis" does not make the atelectasis left.
PREMODIFIER_BARRIERS: frozenset[str] = frozenset(
    {
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "may",
        "might",
        "could",
        "can",
        "would",
        "represent",
        "represents",
        "representing",
        "suggest",
        "suggests",
        "suggesting",
        "reflect",
        "reflects",
        "of",
        "in",
        "at",
        "on",
        "to",
        "from",
        "for",
        "by",
        "seen",
        "noted",
        "there",
        "that",
        "has",
        "have",
        "had",
        "likely",
        "probably",
        "possibly",
        "consistent",
        "compatible",
        "xxxx",
    }
)

# Section headers (followed by a colon) and the category of the section they open.
SECTION_HEADERS: dict[str, tuple[str, ...]] = {
    "findings": ("findings", "finding", "report", "description", "body"),
    "impression": (
        "impression",
        "impressions",
        "conclusion",
        "conclusions",
        "summary",
        "interpretation",
        "opinion",
        "diagnosis",
        "assessment",
        "final impression",
    ),
    "indication": (
        "indication",
        "indications",
        "clinical indication",
        "reason for exam",
        "reason for examination",
        "reason for study",
        "reason",
        "clinical information",
        "clinical data",
        "clinical details",
        "clinical question",
    ),
    "history": ("history", "clinical history", "medical history", "hx", "clinical hx"),
    "comparison": ("comparison", "comparisons", "compared", "prior studies", "prior study", "priors"),
    "technique": ("technique", "exam", "examination", "procedure", "views", "study", "type of exam"),
    "recommendation": ("recommendation", "recommendations", "follow-up", "followup"),
}
