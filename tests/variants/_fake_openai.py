"""A tiny OpenAI-compatible server for tests, on 127.0.0.1 with a free port.

The last user message picks the behaviour: ``[[ok]]`` echoes, ``[[500x2]]`` fails twice with HTTP 500
then answers, ``[[500]]`` always fails, ``[[slow]]`` sleeps past the client timeout once, ``[[hang]]``
always sleeps, ``[[429]]`` answers 429 with Retry-After once, ``[[malformed]]`` sends invalid JSON,
``[[nochoices]]`` sends JSON without choices, ``[[empty]]`` sends an empty reply, ``[[400]]`` a client error.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-model"


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server:``; ``server.url`` is the /v1 base URL."""

    def __init__(self, delay: float = 0.0, hang_s: float = 1.5) -> None:
        self.delay = delay  # seconds every request takes (to observe concurrency)
        self.hang_s = hang_s
        self.calls: Counter[str] = Counter()  # directive -> requests seen
        self.in_flight = 0
        self.max_in_flight = 0
        self.models_calls = 0
        self.auth: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    fake.models_calls += 1
                    self._send(200, json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                fake.auth.append(self.headers.get("Authorization", ""))
                text = payload["messages"][-1]["content"]
                m = re.search(r"\[\[(\w+)\]\]", text)
                directive = m.group(1) if m else "ok"
                with fake._lock:
                    fake.calls[directive] += 1
                    n = fake.calls[directive]
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(fake.delay)
                    self._answer(directive, n, payload, text)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, directive: str, n: int, payload: dict, text: str) -> None:
                if payload.get("model") != MODEL:
                    return self._send(
                        400, json.dumps({"detail": f"unknown model {payload.get('model')}"}).encode()
                    )
                if directive == "500x2" and n <= 2 or directive == "500":
                    return self._send(500, b'{"error": "boom"}')
                if directive == "429" and n == 1:
                    return self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                if directive == "slow" and n == 1 or directive == "hang":
                    time.sleep(fake.hang_s)
                if directive == "malformed":
                    return self._send(200, b'{"choices": [')
                if directive == "nochoices":
                    return self._send(200, b'{"object": "chat.completion"}')
                if directive == "400":
                    return self._send(400, b'{"error": "bad request"}')
                content = "" if directive == "empty" else f"Rewritten: {text.splitlines()[-1]}"
                body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                return self._send(200, json.dumps(body).encode())

        return Handler
