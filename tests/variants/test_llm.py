"""LLM variants: reply clean-up, checks on replies, failures never stored, resume through a real HTTP server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lexray.variants.backends import ChatResult
from lexray.variants.config import LLMConfig, VariantsConfig
from lexray.variants.llm import clean_reply, make_llm_variants
from lexray.variants.pipeline import generate_variants, variant_stats
from lexray.variants.prompts import load_prompt
from lexray.variants.store import VariantStore

from ._fake_openai import FakeOpenAI
from .conftest import HANDWRITTEN, make_study

BY_ID = {s.study_id: s for s in HANDWRITTEN}


class Scripted:
    """A backend that answers from a table keyed by (study marker in the prompt, style marker)."""

    name = "hf:scripted"

    def __init__(self, replies: dict[str, ChatResult]) -> None:
        self.replies = replies
        self.seen: list[str] = []

    def chat(self, conversations: Sequence[list[dict[str, str]]]) -> list[ChatResult]:
        out = []
        for conv in conversations:
            user = conv[-1]["content"]
            self.seen.append(user)
            key = next((k for k in self.replies if k in user), None)
            out.append(self.replies[key] if key else ChatResult(None, "HTTP 500 (gave up after 5 attempts)"))
        return out


def test_clean_reply() -> None:
    assert clean_reply("Here is the rewritten report:\nNo pneumothorax.") == "No pneumothorax."
    assert clean_reply("```\nNo effusion.\n```") == "No effusion."
    assert clean_reply('"Mild cardiomegaly."') == "Mild cardiomegaly."
    assert clean_reply("Sure! Here's the paraphrased report: Lungs clear.") == "Lungs clear."
    assert clean_reply("Report: x") == "x"
    assert clean_reply("The report shows no change.") == "The report shows no change."


def test_prompts_are_versioned_and_filled() -> None:
    p = load_prompt("paraphrase")
    assert p.version_id.startswith("paraphrase/v1-") and len(p.version_id.split("-")[-1]) == 8
    msgs = p.messages("No pneumothorax.")
    assert msgs[0]["role"] == "system" and msgs[1]["content"].endswith("No pneumothorax.")
    e = load_prompt("inject_error").messages("x", "laterality")[1]["content"]
    assert "side (left/right)" in e and "{error_description}" not in e


def test_llm_variants_checked_and_failures_not_recorded(labeler) -> None:
    backend = Scripted(
        {
            # a faithful paraphrase of abn-2 -> accepted
            "mildly enlarged": ChatResult(
                "Here is the paraphrased report: Small left pleural effusion. Mild cardiomegaly. "
                "No pneumothorax. The lungs are otherwise clear."
            ),
            # a "paraphrase" of abn-3 that flips the side -> rejected by the check
            "new right upper lobe": ChatResult(
                "New left upper lobe consolidation and pneumonia. No pleural effusion."
            ),
            # an empty reply for norm-2 -> failure
            "Heart size normal. Lungs clear.": ChatResult(None, "empty reply"),
        }
    )
    studies = [BY_ID["abn-2"], BY_ID["abn-3"], BY_ID["norm-2"], BY_ID["norm-1"]]
    out = make_llm_variants(studies, ["paraphrase"], backend, labeler)
    recs = {r.study_id: r for r in out.records}
    assert recs["abn-2"].accepted and recs["abn-2"].text.startswith("Small left pleural effusion.")
    assert not recs["abn-3"].accepted and "laterality" in recs["abn-3"].reject_reason
    assert set(recs) == {"abn-2", "abn-3"}  # failures are not records
    assert {(f["study_id"], f["reason"]) for f in out.failures} == {
        ("norm-2", "empty reply"),
        ("norm-1", "HTTP 500 (gave up after 5 attempts)"),
    }
    for r in out.records:
        assert r.generator == "hf:scripted" and r.prompt_version == load_prompt("paraphrase").version_id


def test_llm_error_injection_checked(labeler) -> None:
    backend = Scripted(
        {
            "swap the side": ChatResult(
                "FINDINGS: The heart is mildly enlarged. There is a small right pleural effusion. No pneumothorax. "
                "The lungs are otherwise clear.\nIMPRESSION: Mild cardiomegaly. Small right pleural effusion."
            ),
            "add one finding": ChatResult(
                "FINDINGS: The heart is severely enlarged. There is a small left pleural effusion. Right pneumothorax. "
                "The lungs are otherwise clear.\nIMPRESSION: Mild cardiomegaly. Small left pleural effusion."
            ),
        }
    )
    out = make_llm_variants(
        [BY_ID["abn-2"]], ["error"], backend, labeler, error_types=["laterality", "fabricated"]
    )
    recs = {r.error_type: r for r in out.records}
    assert recs["laterality"].accepted and recs["laterality"].kind == "error"
    assert not recs["fabricated"].accepted and recs["fabricated"].reject_reason.startswith(
        "more than one change"
    )


def test_runaway_reply_is_a_failure(labeler) -> None:
    backend = Scripted({"mildly enlarged": ChatResult("No effusion. " * 200)})
    out = make_llm_variants([BY_ID["abn-2"]], ["paraphrase"], backend, labeler, max_length_ratio=3.0)
    assert not out.records and "over 3x the source" in out.failures[0]["reason"]


def test_openai_run_resumes_and_retries_only_failures(tmp_path: Path, labeler) -> None:
    studies = [
        make_study("ok-1", "No pneumothorax. [[ok]]", "Mild cardiomegaly."),
        make_study("bad-1", "No effusion. [[500]]", "Normal heart size."),
        make_study("flaky-1", "Lungs clear. [[500x2]]", "No acute disease."),
    ]
    with FakeOpenAI() as server:
        cfg = VariantsConfig(
            generator=f"openai:{server.url}",
            styles=("paraphrase",),
            llm=LLMConfig(max_retries=1, backoff_s=0.01, timeout_s=2.0),
        )
        store = VariantStore(tmp_path / "v")
        first = generate_variants(studies, cfg, store, labeler=labeler, progress=False)
        # bad-1 always fails; flaky-1 fails twice and one retry is not enough
        assert (first.written, first.failures) == (1, 2)
        assert server.calls["500"] == 2 and server.calls["500x2"] == 2 and server.calls["ok"] == 1
        second = generate_variants(studies, cfg, store, labeler=labeler, progress=False)
        # only the two failures are asked again; flaky-1 now succeeds
        assert (second.skipped, second.written, second.failures) == (1, 1, 1)
        assert server.calls["ok"] == 1 and server.calls["500x2"] == 3
    ids = sorted(r.study_id for r in store.read())
    assert ids == ["flaky-1", "ok-1"]
    assert all(r.text.startswith("Rewritten:") for r in store.read())
    (row,) = variant_stats(store)
    # bad-1 counts once (two failed runs, one missing variant); flaky-1 succeeded later, so not at all
    assert (row.total, row.failures, row.generator) == (2, 1, f"openai:{server.url}")
    assert row.rejection_rate == (row.rejected + 1) / (row.total + 1)
