"""Property-based fuzzing of the OpenAPI spec with schemathesis: no generated input may cause a 5xx."""

from __future__ import annotations

import pytest
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
