"""GREEN reply parser on canned replies, and the judge client against a fake OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lexray.evaluate.green import JudgeConfig, JudgeError, green_prompt, green_scores, parse_green_reply

WELL_FORMED = """[Explanation]:
The candidate misses the effusion and overstates cardiomegaly.

[Clinically Significant Errors]:
(a) False report of a finding in the candidate: 0.
(b) Missing a finding present in the reference: 1. Small left pleural effusion
(c) Misidentification of a finding's anatomic location/position: 0.
(d) Misassessment of the severity of a finding: 1. Cardiomegaly called severe
(e) Mentioning a comparison that isn't in the reference: 0.
(f) Omitting a comparison detailing a change from a prior study: 0.

[Clinically Insignificant Errors]:
(a) False report of a finding in the candidate: 1. Degenerative spine change
(b) Missing a finding present in the reference: 0.
(c) Misidentification of a finding's anatomic location/position: 0.
(d) Misassessment of the severity of a finding: 0.
(e) Mentioning a comparison that isn't in the reference: 0.
(f) Omitting a comparison detailing a change from a prior study: 0.

[Matched Findings]:
3. No pneumothorax; No consolidation; Cardiomegaly
"""

# Fenced, numbered categories, some missing, errors section says "No errors".
PARTIAL = """```
[Explanation]:
Mostly consistent.

[Clinically Significant Errors]:
(1) False report of a finding in the candidate: 2. Edema; Nodule
(4) Misassessment of the severity of a finding: 1. Effusion size

[Clinically Insignificant Errors]:
No clinically insignificant errors.

[Matched Findings]:
2. Normal heart size; No pneumothorax
```"""

NOTHING_MATCHED = """[Clinically Significant Errors]:
(a) False report of a finding in the candidate: 3. A; B; C

[Matched Findings]:
0.
"""

MALFORMED = "The candidate report looks mostly fine to me, maybe 80% accurate."
NO_MATCH_NUMBER = """[Clinically Significant Errors]:
(a) False report: 1. X

[Matched Findings]:
several findings match
"""


def test_well_formed_reply():
    r = parse_green_reply(WELL_FORMED)
    assert r.significant == {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0, "f": 0}
    assert r.insignificant == {"a": 1, "b": 0, "c": 0, "d": 0, "e": 0, "f": 0}
    assert r.matched == 3
    assert r.problems == ()
    assert r.score == pytest.approx(3 / (3 + 2))  # insignificant errors do not count


def test_partial_reply():
    r = parse_green_reply(PARTIAL)
    assert r.significant == {"a": 2, "b": 0, "c": 0, "d": 1, "e": 0, "f": 0}
    assert r.insignificant == dict.fromkeys("abcdef", 0)
    assert r.matched == 2
    assert r.score == pytest.approx(2 / 5)
    assert any("lacks categories b,c,e,f" in p for p in r.problems)


def test_nothing_matched_scores_zero():
    r = parse_green_reply(NOTHING_MATCHED)
    assert r.matched == 0 and r.score == 0.0


def test_malformed_replies_are_unparsed_not_guessed():
    r = parse_green_reply(MALFORMED)
    assert r.score is None and r.matched is None and r.significant is None
    assert "no [Matched Findings] section" in r.problems
    r2 = parse_green_reply(NO_MATCH_NUMBER)
    assert r2.score is None
    assert any("does not start with a number" in p for p in r2.problems)


def test_prompt_holds_both_reports():
    p = green_prompt("REF TEXT", "CAND TEXT")
    assert "2. Reference Report:\n    REF TEXT" in p and "3. Candidate Report:\n    CAND TEXT" in p
    assert "[Matched Findings]:" in p


class _FakeJudge(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        prompt = body["messages"][0]["content"]
        reply = WELL_FORMED if "CASE-GOOD" in prompt else PARTIAL if "CASE-PARTIAL" in prompt else MALFORMED
        out = json.dumps(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeJudge.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


def test_green_through_fake_openai_server(judge_url, monkeypatch):
    monkeypatch.setenv("LEXRAY_TEST_JUDGE_KEY", "sk-test")
    cfg = JudgeConfig(base_url=judge_url, model="judge-x", api_key_env="LEXRAY_TEST_JUDGE_KEY")
    out = green_scores(["r1", "r2", "r3"], ["CASE-GOOD", "CASE-PARTIAL", "CASE-BAD"], cfg, progress=False)
    assert out["scores"][0] == pytest.approx(0.6)
    assert out["scores"][1] == pytest.approx(0.4)
    assert out["scores"][2] is None
    assert out["green"] == pytest.approx(0.5)
    assert out["green_unparsed_as_zero"] == pytest.approx(1.0 / 3)
    assert out["n_unparsed"] == 1
    assert out["significant_errors_mean"]["a"] == pytest.approx(1.0)
    path, auth, body = _FakeJudge.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "judge-x" and body["temperature"] == 0.0


def test_unreachable_judge_names_the_fix():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", retries=0, timeout_s=2)
    with pytest.raises(JudgeError, match="OpenAI-compatible"):
        green_scores(["r"], ["c"], cfg, progress=False)


def test_green_judge_inside_report_metrics(judge_url, keyword_labeler):
    from lexray.evaluate.generation import GenerationConfig, report_metrics

    cfg = GenerationConfig(green="judge", judge=JudgeConfig(base_url=judge_url, retries=0))
    out = report_metrics(["CASE-GOOD edema", "CASE-PARTIAL"], ["edema", "effusion"], cfg, keyword_labeler)
    assert out["green"]["green"] == pytest.approx(0.5)
    # The judge saw the reference as "Reference Report" and the retrieved text as "Candidate Report".
    prompt = _FakeJudge.seen[0][2]["messages"][0]["content"]
    assert "Reference Report:\n    edema" in prompt and "Candidate Report:\n    CASE-GOOD edema" in prompt
