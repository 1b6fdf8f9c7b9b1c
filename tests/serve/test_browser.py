"""End to end in headless Chromium: upload a phantom radiograph on the web page and see results.

Needs Debian's ``chromium`` (``make browser`` installs it) and the ``playwright`` Python package; the
test drives the system browser and never downloads one.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lexray.data.study import Image, Study
from lexray.index import IndexConfig, Searcher, build_index, make_ref
from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png
from lexray.serve import ServeConfig, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (run `make browser` or apt-get install chromium)",
)

_FINDINGS = {
    "ph0": ("Heart size normal. Lungs clear.", PhantomFindings()),
    "ph1": ("Cardiomegaly. No effusion.", PhantomFindings(cardiomegaly=True)),
    "ph2": ("Small left pleural effusion.", PhantomFindings(effusion=(("left", 1),))),
    "ph3": ("Right pneumothorax.", PhantomFindings(pneumothorax=("right",))),
    "ph4": ("Pulmonary edema and cardiomegaly.", PhantomFindings(cardiomegaly=True, edema=True)),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def phantom_site(tmp_path_factory: pytest.TempPathFactory, toy_path: None) -> Iterator[tuple[str, Path]]:
    """A phantom index served by uvicorn on a free 127.0.0.1 port in a thread; yields (url, root)."""
    import uvicorn
    from toy_embedder import ToyEmbedder

    root = tmp_path_factory.mktemp("e2e")
    studies = []
    for sid, (report, findings) in _FINDINGS.items():
        png = save_phantom_png(root / f"{sid}.png", render_phantom(findings, sid, size=128), sid, findings)
        studies.append(
            Study(study_id=sid, patient_id=sid, source="phantom", split="test", findings=report,
                  images=(Image(path=str(png), view="PA"),))
        )  # fmt: skip
    run = ToyEmbedder(dim=32).save_pretrained(root / "run")
    cfg = IndexConfig(model_class="toy_embedder:ToyEmbedder")
    build_index(studies, ToyEmbedder(32), make_ref(run, cfg.model_class), root / "index", cfg, progress=False)
    app = create_app(Searcher.open(root / "index"), ServeConfig())
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/", root
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(phantom_site):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page()
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


_IMAGES_LOADED = """() => {
  const imgs = [...document.querySelectorAll('#results .thumbs img')];
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


def test_upload_phantom_and_see_reports_with_images(page, phantom_site):
    url, root = phantom_site
    page.goto(url)
    page.wait_for_function("() => document.getElementById('index-info').textContent.includes('5 studies')")
    page.set_input_files("#image-file", str(root / "ph2.png"))
    page.fill("#image-k", "3")
    page.click("#image-submit")
    page.wait_for_selector("#results .result")
    assert page.locator("#results .result").count() == 3
    page.wait_for_function(_IMAGES_LOADED)
    first = page.locator("#results .result").first
    assert first.locator(".score").inner_text().startswith("score ")
    assert first.locator(".findings").inner_text() in {r for r, _ in _FINDINGS.values()}
    assert "3 result(s)" in page.inner_text("#status")

    # Similar films: the uploaded phantom itself comes first, marked as the match.
    page.select_option("#image-target", "image")
    page.click("#image-submit")
    page.wait_for_function(
        "() => document.querySelector('#results .result .study')?.textContent === 'study ph2'"
    )
    page.wait_for_function(_IMAGES_LOADED)
    assert page.locator("#results .result").first.locator("img.matched").count() == 1


def test_text_search_and_error_message(page, phantom_site):
    url, root = phantom_site
    page.goto(url)
    page.fill("#text-query", "small left pleural effusion")
    page.click("#text-submit")
    page.wait_for_selector("#results .result")
    page.wait_for_function(_IMAGES_LOADED)
    assert page.locator("#results .result").count() == 5
    # A non-image upload shows the service's reason, not a crash.
    bad = root / "notes.png"
    bad.write_bytes(b"this is not an image")
    page.set_input_files("#image-file", str(bad))
    page.click("#image-submit")
    page.wait_for_selector("#status.error")
    assert "not a PNG, JPEG or DICOM" in page.inner_text("#status")
    assert page.locator("#results .result").count() == 0
