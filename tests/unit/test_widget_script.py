"""GET /widget.js: the web chat widget's script, served by the chat function with caching
headers, an ETag answered with 304, gzip when the browser takes it; on Lambda too."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from copilot.bootstrap import set_container
from copilot.entrypoints.http.lambda_adapter import lambda_handler_for
from copilot.entrypoints.http.static import StaticAsset
from tests.conftest import chat_test_client, load_event

SCRIPT = resources.files("copilot").joinpath("entrypoints/http/static/widget.js").read_bytes()


@pytest.fixture
def client() -> Iterator[Any]:
    yield chat_test_client()
    set_container(None)


def test_the_script_is_served_with_caching_headers_and_no_cors(client: Any) -> None:
    r = client.get("/widget.js", headers={"Origin": "https://shop.example"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert r.headers["Cache-Control"] == "public, max-age=300"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Encoding" not in r.headers
    assert r.data == SCRIPT
    # Any page may load a <script>: no CORS header is needed, and none is sent.
    assert "Access-Control-Allow-Origin" not in r.headers


def test_a_current_copy_gets_304_and_a_stale_one_the_file(client: Any) -> None:
    etag = client.get("/widget.js").headers["ETag"]
    again = client.get("/widget.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    stale = client.get("/widget.js", headers={"If-None-Match": '"0123"'})
    assert stale.status_code == 200 and stale.data == SCRIPT


def test_gzip_when_accepted_with_its_own_etag(client: Any) -> None:
    plain = client.get("/widget.js")
    zipped = client.get("/widget.js", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.data) == SCRIPT
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    refused = client.get("/widget.js", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers and refused.data == SCRIPT


def test_the_file_is_read_on_its_first_request_only() -> None:
    from werkzeug.test import EnvironBuilder

    asset = StaticAsset("widget.js", "application/javascript")
    assert "_file" not in vars(asset)  # building the routes reads nothing
    request = EnvironBuilder(path="/widget.js").get_request()
    assert asset.response(request).get_data() == SCRIPT
    loaded = vars(asset)["_file"]
    asset.response(request)
    assert vars(asset)["_file"] is loaded  # once per process


def test_on_lambda_the_gzip_copy_goes_base64_encoded(client: Any) -> None:
    from copilot.bootstrap import container

    handler = lambda_handler_for(container().chat_api)
    event = load_event(
        "http_api_v2", method="GET", path="/widget.js", query="", authorization="", admin_key=""
    )
    event["headers"]["accept-encoding"] = "gzip"
    event["body"] = ""
    response = handler(event, None)
    assert response["statusCode"] == 200
    assert response["headers"]["content-encoding"] == "gzip"
    assert response["isBase64Encoded"] is True
    assert gzip.decompress(base64.b64decode(response["body"])) == SCRIPT


def test_the_openapi_document_states_the_script_and_its_304(client: Any) -> None:
    op = client.get("/openapi.json").get_json()["paths"]["/widget.js"]["get"]
    assert set(op["responses"]) == {"200", "304"}
    assert "application/javascript" in op["responses"]["200"]["content"]
    assert {"ETag", "Cache-Control"} <= set(op["responses"]["200"]["headers"])
    assert [p["name"] for p in op["parameters"]] == ["If-None-Match"]
    assert "security" not in op


def test_the_script_is_small_and_builds_no_markup_from_strings() -> None:
    assert len(gzip.compress(SCRIPT, 9)) < 12 * 1024
    text = SCRIPT.decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in text, sink
