"""The FastAPI application: search by image or text, study lookup, image previews and the web page.

Endpoints (all JSON errors are ``{"detail": reason}``):

* ``POST /v1/search/image`` multipart ``file`` (PNG, JPEG or DICOM), form fields ``k`` and ``target``
* ``POST /v1/search/text`` JSON ``{"text", "k", "target"}``
* ``GET /v1/studies/{study_id}`` a study's report sections and images
* ``GET /v1/images/{image_id}`` PNG preview of an image the index references (nothing else is served)
* ``GET /healthz`` status; ``GET /`` the web page; ``/docs``, ``/redoc`` and ``/openapi.json`` the API
  description (the docs pages work offline)

Request logs carry method, path, status and time only: never bodies, report text or query text.
"""

# No `from __future__ import annotations`: FastAPI resolves the handlers' annotations at runtime, and
# they refer to closure variables (the bearer scheme, the config) that string annotations cannot see.

import logging
import secrets
import threading
import time
from collections import OrderedDict
from importlib import resources
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from lexray import __version__
from lexray.data.images import ImageError, ImageLimits, load_radiograph
from lexray.index.search import Hit, Searcher, SearchResult
from lexray.serve._upload import UploadError, decode_upload, to_png
from lexray.serve.config import ServeConfig
from lexray.serve.schemas import (
    ErrorOut,
    HealthOut,
    HitOut,
    ImageOut,
    QueryInfo,
    SearchResponse,
    StudyOut,
    TextSearchRequest,
)

log = logging.getLogger("lexray.serve")
access_log = logging.getLogger("lexray.serve.access")

_STATIC = resources.files("lexray.serve") / "static"
_ERRORS = {
    400: {"model": ErrorOut, "description": "bad input, with the reason"},
    401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
    404: {"model": ErrorOut, "description": "unknown id"},
    413: {"model": ErrorOut, "description": "upload or image too large"},
    422: {"model": ErrorOut, "description": "a parameter out of range"},
}
_PREVIEW_CACHE_SIZE = 64
_MULTIPART_SLACK = 64 * 1024  # room for multipart boundaries and form fields around the file
_GENERIC_TOO_LARGE = "Content Too Large"  # the detail of Starlette's request-body limit


class _PreviewCache:
    """A small LRU of rendered PNG previews (radiographs are large and slow to decode)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple[int, int], value: bytes) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def create_app(searcher: Searcher, config: ServeConfig = ServeConfig(), token: str | None = None) -> FastAPI:
    """Build the service around a loaded index and model.

    Args:
        searcher: the index and the model that embeds queries.
        config: limits and defaults.
        token: when set, every ``/v1`` request needs ``Authorization: Bearer <token>``.
    """
    index = searcher.index
    model_lock = threading.Lock()  # one query at a time through the model: it is CPU-bound anyway
    previews = _PreviewCache(_PREVIEW_CACHE_SIZE)
    bearer = HTTPBearer(auto_error=False, description="set when the service was started with a token")
    body_limit = config.max_upload_bytes + _MULTIPART_SLACK

    # /docs and /redoc load their scripts from the package, not a CDN: they work on an offline machine.
    app = FastAPIOffline(
        title="lexray",
        version=__version__,
        description=(
            "Chest X-ray image-text retrieval over a lexray index: find reports for a film, films for a "
            "description. A research tool, not a medical device."
        ),
    )

    def check_token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not token:
            return
        given = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(check_token)]

    @app.middleware("http")
    async def log_requests(request: Request, call_next):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > body_limit:
            # Refuse before the body is read and spooled. Bodies without a Content-Length (chunked) are
            # counted while they stream in, by the max_body_size of the routes that read a body.
            access_log.info("%s %s -> 413 (body of %s bytes)", request.method, request.url.path, length)
            return JSONResponse(
                {
                    "detail": f"request body of {int(length):,} bytes exceeds the upload limit of "
                    f"{config.max_upload_bytes:,} bytes"
                },
                status_code=413,
                headers={"Connection": "close"},
            )
        try:
            response = await call_next(request)
        except Exception:
            access_log.exception("%s %s -> 500", request.method, request.url.path)
            raise
        # Path only: no query string, no body, so neither query nor report text reaches the log.
        access_log.info(
            "%s %s -> %d (%.1f ms)", request.method, request.url.path, response.status_code,
            (time.perf_counter() - t0) * 1e3,
        )  # fmt: skip
        return response

    @app.exception_handler(413)
    async def too_large(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's body limit (a chunked body passing max_body_size as it streams) says only "Content
        # Too Large": name the limit. Closing the connection stops the client sending, and the server
        # reading, the rest of an oversized body.
        detail = exc.detail
        if detail == _GENERIC_TOO_LARGE:
            detail = (
                f"request body exceeds the limit of {body_limit:,} bytes "
                f"(max_upload_bytes {config.max_upload_bytes:,} plus form overhead); send a smaller file"
            )
        return JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line per problem, without echoing the submitted values (they may be report text).
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    def image_out(row: int) -> ImageOut:
        rec = index.image(row)
        return ImageOut(id=rec.row, url=f"v1/images/{rec.row}", view=rec.view)

    def hit_out(hit: Hit) -> HitOut:
        study = index.study(hit.study_id)
        return HitOut(
            rank=hit.rank,
            score=round(hit.score, 6),
            study_id=hit.study_id,
            findings=study.findings,
            impression=study.impression,
            matched_image=image_out(hit.image.row) if hit.image is not None else None,
            images=[image_out(r.row) for r in index.study_images(hit.study_id)],
        )

    def respond(query: QueryInfo, result: SearchResult, t0: float) -> SearchResponse:
        return SearchResponse(
            query=query,
            results=[hit_out(hit) for hit in result.hits],
            embed_ms=round(result.embed_ms, 3),
            search_ms=round(result.search_ms, 3),
            total_ms=round((time.perf_counter() - t0) * 1e3, 3),
        )

    def check_k(k: int) -> int:
        if not 1 <= k <= config.max_k:
            raise HTTPException(422, f"k must be between 1 and {config.max_k}, got {k}")
        return k

    def check_target(target: str) -> None:
        if target not in index.modalities:
            raise HTTPException(
                400,
                f"this index has no {target} vectors (it has {', '.join(index.modalities)}); choose another target",
            )

    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    def healthz() -> HealthOut:
        """Liveness and what the index holds."""
        return HealthOut(
            status="ok",
            index_version=index.version,
            studies=len(index.studies),
            images=len(index.images),
            modalities=list(index.modalities),
            embed_dim=index.embed_dim,
            model_class=index.model_ref.model_class,
            auth=bool(token),
        )

    # One setting for both routes, so a client handles image and text search with the same code and a
    # change to the schema, errors, auth or body limit cannot reach one route and miss the other.
    search_route: dict[str, Any] = {
        "response_model": SearchResponse,
        "responses": _ERRORS,
        "dependencies": auth,
        "tags": ["search"],
        "max_body_size": body_limit,
    }

    @app.post("/v1/search/image", **search_route)
    def search_image(
        file: Annotated[UploadFile, File(description="a PNG, JPEG or DICOM radiograph")],
        k: Annotated[int, Form(description="number of results")] = config.default_k,
        target: Annotated[Literal["text", "image"], Form(description="search reports or images")] = "text",
    ) -> SearchResponse:
        """Find the reports (or films) that best match an uploaded radiograph."""
        t0 = time.perf_counter()
        check_k(k)
        check_target(target)
        data = file.file.read(config.max_upload_bytes + 1)  # sync handler: runs in the thread pool
        try:
            decoded = decode_upload(
                data, file.filename or "upload", config.max_upload_bytes, config.max_pixels
            )
        except UploadError as exc:
            raise HTTPException(exc.status, exc.reason) from exc
        with model_lock:
            result = searcher.by_image(decoded.pixels, k=k, target=target)
        h, w = decoded.pixels.shape
        return respond(QueryInfo(kind="image", target=target, k=k, width=w, height=h), result, t0)

    @app.post("/v1/search/text", **search_route)
    def search_text(body: TextSearchRequest) -> SearchResponse:
        """Find the films (or reports) that best match a description."""
        t0 = time.perf_counter()
        check_k(body.k)
        check_target(body.target)
        text = body.text.strip()
        if not text:
            raise HTTPException(400, "text is blank; describe the findings to search for")
        if len(text) > config.max_text_chars:
            raise HTTPException(422, f"text has {len(text)} characters; the limit is {config.max_text_chars}")
        with model_lock:
            result = searcher.by_text(text, k=body.k, target=body.target)
        return respond(QueryInfo(kind="text", target=body.target, k=body.k, chars=len(text)), result, t0)

    @app.get(
        "/v1/studies/{study_id}",
        response_model=StudyOut,
        responses=_ERRORS,
        dependencies=auth,
        tags=["studies"],
    )
    def get_study(study_id: str) -> StudyOut:
        """A study's report sections and its indexed images."""
        if not index.has_study(study_id):
            raise HTTPException(404, f"study {study_id!r} is not in the index")
        s = index.study(study_id)
        return StudyOut(
            study_id=s.study_id,
            source=s.source,
            split=s.split,
            findings=s.findings,
            impression=s.impression,
            indication=s.indication,
            comparison=s.comparison,
            images=[image_out(r.row) for r in index.study_images(study_id)],
        )

    @app.get(
        "/v1/images/{image_id}",
        responses={**_ERRORS, 200: {"content": {"image/png": {}}, "description": "PNG preview"}},
        response_class=Response,
        dependencies=auth,
        tags=["studies"],
    )
    def get_image(image_id: int, max_side: int | None = None) -> Response:
        """PNG preview of an image the index references (only those; never arbitrary paths)."""
        side = config.image_max_side if max_side is None else max_side
        if not 16 <= side <= 4096:
            raise HTTPException(422, f"max_side must be between 16 and 4096, got {side}")
        if not 0 <= image_id < len(index.images):
            raise HTTPException(404, f"image {image_id} is not in the index")
        key = (image_id, side)
        png = previews.get(key)
        if png is None:
            rec = index.image(image_id)
            try:
                pixels = load_radiograph(rec.path, ImageLimits()).pixels  # (H, W) in [0, 1]
            except ImageError as exc:
                log.warning("image %d of study %s cannot be read: %s", image_id, rec.study_id, exc)
                raise HTTPException(404, f"image {image_id} is no longer readable on the server") from exc
            png = to_png(np.asarray(pixels), side)
            previews.put(key, png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((_STATIC / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")
    return app
