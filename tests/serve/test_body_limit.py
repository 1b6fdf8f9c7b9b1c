"""Request bodies without a Content-Length are limited while they stream in, for JSON and uploads alike."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn

from lexray.serve import ServeConfig, create_app

LIMIT = 64 * 1024  # max_upload_bytes of the app under test
CHUNK = 16 * 1024
CHUNKS = 512  # 8 MiB offered in all: far past the limit plus the 64 KiB form slack


def _app(searcher):  # noqa: ANN202 - a FastAPI app
    return create_app(searcher, ServeConfig(max_upload_bytes=LIMIT))


class _Body:
    """An async chunk stream that counts how much of itself the server pulled."""

    def __init__(self, head: bytes, filler: bytes, chunks: int) -> None:
        self.head, self.filler, self.chunks, self.sent = head, filler, chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        for _ in range(self.chunks):
            self.sent += 1
            yield self.filler


async def _post(app, path: str, body: _Body, headers: dict[str, str]) -> httpx.Response:  # noqa: ANN001
    # A streamed body gets no Content-Length: httpx frames it as chunked, the ASGI app sees many messages.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.post(path, content=body, headers=headers)


def test_oversized_chunked_json_is_refused_while_streaming(searcher):
    # Valid JSON all the way: the text is padded with spaces after the object.
    body = _Body(json.dumps({"text": "lungs clear", "k": 3}).encode(), b" " * CHUNK, CHUNKS)
    r = asyncio.run(_post(_app(searcher), "/v1/search/text", body, {"Content-Type": "application/json"}))
    assert r.status_code == 413, r.text
    assert "exceeds the limit of" in r.json()["detail"] and r.headers["connection"] == "close"
    assert body.sent < 16  # stopped soon after the limit instead of reading the 8 MiB


def test_oversized_chunked_upload_is_refused_while_streaming(searcher):
    head = (
        b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    body = _Body(head, b"\0" * CHUNK, CHUNKS)
    r = asyncio.run(
        _post(_app(searcher), "/v1/search/image", body, {"Content-Type": "multipart/form-data; boundary=xx"})
    )
    assert r.status_code == 413, r.text
    assert body.sent < 16


def test_small_chunked_bodies_still_work(searcher):
    body = _Body(json.dumps({"text": "heart lungs", "k": 2}).encode(), b" ", 3)
    r = asyncio.run(_post(_app(searcher), "/v1/search/text", body, {"Content-Type": "application/json"}))
    assert r.status_code == 200 and len(r.json()["results"]) == 2


def test_declared_oversized_length_is_refused_before_reading(searcher):
    body = _Body(b"{}", b" " * CHUNK, 8)
    headers = {"Content-Type": "application/json", "Content-Length": str(10 * LIMIT)}
    r = asyncio.run(_post(_app(searcher), "/v1/search/text", body, headers))
    assert r.status_code == 413 and body.sent == 0


@pytest.fixture
def live_server(searcher) -> Iterator[int]:
    """The app on a real uvicorn server on 127.0.0.1 (port chosen by the OS), stopped afterwards."""
    server = uvicorn.Server(uvicorn.Config(_app(searcher), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)


def test_real_server_answers_413_mid_stream(live_server: int):
    total_chunks = 2048  # 32 MiB offered; the loop stops by itself at the first byte of an answer
    head = (
        b"POST /v1/search/text HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", live_server), timeout=10) as sock:
        sock.sendall(head + b"1\r\n{\r\n")
        try:
            for _ in range(total_chunks):
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered
                sock.sendall(chunk)
                sent += CHUNK
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        answer = b""
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert sent < total_chunks * CHUNK // 4  # answered long before the body ended
