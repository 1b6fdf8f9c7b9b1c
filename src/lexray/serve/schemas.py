"""Request and response bodies of the HTTP API (they also make its OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ImageOut(BaseModel):
    """An image the index references, served by ``GET /v1/images/{id}``."""

    id: int = Field(description="image id (row of the index's image table)")
    url: str = Field(description="path of the PNG preview, relative to the service root")
    view: str = Field(description="view position, '' when unknown")


class HitOut(BaseModel):
    """One search result: a study, its report sections and its images."""

    rank: int = Field(description="1-based position")
    score: float = Field(description="cosine similarity between query and result")
    study_id: str
    findings: str
    impression: str
    matched_image: ImageOut | None = Field(None, description="the image that matched (image-side searches)")
    images: list[ImageOut] = Field(description="all indexed images of the study")


class QueryInfo(BaseModel):
    """What the service understood of the query (never echoes the text itself)."""

    kind: Literal["image", "text"]
    target: Literal["image", "text"] = Field(description="the side searched: report texts or images")
    k: int
    width: int | None = Field(None, description="image queries: decoded width in pixels")
    height: int | None = Field(None, description="image queries: decoded height in pixels")
    chars: int | None = Field(None, description="text queries: length in characters")


class SearchResponse(BaseModel):
    """Results of a search, best first, with timings."""

    query: QueryInfo
    results: list[HitOut]
    embed_ms: float = Field(description="time spent embedding the query")
    search_ms: float = Field(description="time spent in the vector index")
    total_ms: float = Field(description="time spent in the handler, decoding included")


class TextSearchRequest(BaseModel):
    """A text query: a report-like description."""

    text: str = Field(min_length=1, description="the description, e.g. 'small left pleural effusion'")
    k: int = Field(5, ge=1, description="number of results")
    target: Literal["image", "text"] = Field("image", description="search images (default) or reports")


class StudyOut(BaseModel):
    """A study the index holds."""

    study_id: str
    source: str
    split: str
    findings: str
    impression: str
    indication: str
    comparison: str
    images: list[ImageOut]


class HealthOut(BaseModel):
    """Service status."""

    status: Literal["ok"]
    index_version: str
    studies: int
    images: int
    modalities: list[str]
    embed_dim: int
    model_class: str
    auth: bool = Field(description="whether /v1 endpoints require a bearer token")


class ErrorOut(BaseModel):
    """Every 4xx answer: a reason the caller can act on."""

    detail: str
