"""The API description pages work on a machine without network: their scripts come from the package."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from lexray.serve import create_app


def test_docs_and_redoc_load_only_local_assets(searcher) -> None:  # noqa: ANN001
    client = TestClient(create_app(searcher))
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
        scripts = [a for a in assets if a.endswith((".js", ".css"))]
        assert scripts, html.text
        for url in scripts:
            assert url.startswith("/"), f"{page} loads {url} from another host"
            got = client.get(url)
            assert got.status_code == 200 and len(got.content) > 10_000, url
    assert client.get("/openapi.json").json()["info"]["title"] == "lexray"
