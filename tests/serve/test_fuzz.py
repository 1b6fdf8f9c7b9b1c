"""Property-based fuzzing of the OpenAPI spec with schemathesis: no generated input may cause a 5xx."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from lexray.serve import ServeConfig, create_app

# schemathesis' lazy pytest fixture loader does not support this pytest version, so each operation's
# strategy is driven by hypothesis directly.
_OPERATIONS = [
    ("POST", "/v1/search/image"),
    ("POST", "/v1/search/text"),
    ("GET", "/v1/studies/{study_id}"),
    ("GET", "/v1/images/{image_id}"),
    ("GET", "/healthz"),
]


@pytest.fixture(scope="module")
def api_schema(searcher):
    app = create_app(searcher, ServeConfig(max_k=20, max_upload_bytes=256 * 1024, max_pixels=512 * 512))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_spec_covers_every_operation(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(_OPERATIONS)


@pytest.mark.parametrize(("method", "path"), _OPERATIONS)
def test_no_server_errors(api_schema, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        case.call_and_validate(checks=[not_a_server_error])

    check()


_BODY_LIMIT = 256 * 1024 + 64 * 1024  # max_upload_bytes of the fuzzed app plus the multipart slack
_POSTS = [op for op in _OPERATIONS if op[0] == "POST"]


def _encoded(case) -> tuple[dict[str, str], bytes]:  # noqa: ANN001 - a schemathesis Case
    """The headers and body bytes schemathesis would send for ``case``, as ``requests`` encodes them."""
    kwargs = case.as_transport_kwargs(base_url="http://fuzz")
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=dict(kwargs.get("headers") or {}),
        params=kwargs.get("params"),
        files=kwargs.get("files"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
    ).prepare()
    body = prepared.body or b""
    headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("content-length", "connection")}
    return headers, body.encode("utf-8") if isinstance(body, str) else body


def _send_chunked(app, method: str, url: str, headers: dict[str, str], chunks: list[bytes]):  # noqa: ANN001, ANN202
    """Send ``chunks`` as a body without Content-Length; returns (response, chunks the app pulled)."""
    pulled = 0

    async def stream():  # noqa: ANN202 - an async byte iterator
        nonlocal pulled
        for chunk in chunks:
            pulled += 1
            yield chunk

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fuzz") as client:
            return await client.request(method, url, headers=headers, content=stream())

    return asyncio.run(go()), pulled


@pytest.mark.parametrize(("method", "path"), _POSTS)
def test_chunked_bodies_without_length(api_schema, method, path):
    """Generated bodies streamed without Content-Length: never a 5xx; padded past the limit: 413 early."""
    operation = api_schema[path][method]
    app = operation.app

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        headers, body = _encoded(case)
        url = case.as_transport_kwargs(base_url="http://fuzz")["url"]
        pieces = [body[i : i + 997] for i in range(0, len(body), 997)] or [b""]
        response, _ = _send_chunked(app, case.method, url, headers, pieces)
        assert response.status_code < 500, response.text
        # The same body with 32 chunks of 16 KiB of trailing CRLFs (JSON whitespace, or a multipart
        # epilogue) is over the limit: refused with 413 before the rest is read.
        padding = [b"\r\n" * 8192] * 32
        response, pulled = _send_chunked(app, case.method, url, headers, [body, *padding])
        assert response.status_code == 413, response.text
        assert response.json()["detail"] and pulled <= 1 + _BODY_LIMIT // 16384 + 2

    check()
