"""Static files the chat function serves to browsers: the web chat widget's script.

A file is read once per process, on its first request (never on the cold path of the API's
other routes), and kept with its ETag and a gzip copy. Browsers and shared caches keep it a few
minutes and then revalidate (304 on a matching If-None-Match), so a new deployment reaches every
page within ``max_age`` seconds. It is compressed here because API Gateway's HTTP API does not
compress responses.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class _Loaded:
    raw: bytes
    gzipped: bytes
    etag: str  # of the raw bytes; the gzip copy's is this with "-gz"


@dataclass
class StaticAsset:
    name: str  # a file in copilot/entrypoints/http/static/ (package data)
    media_type: str
    max_age: int = 300

    @cached_property
    def _file(self) -> _Loaded:
        raw = resources.files(__package__).joinpath("static", self.name).read_bytes()
        digest = hashlib.sha256(raw).hexdigest()[:32]
        return _Loaded(raw, gzip.compress(raw, compresslevel=9, mtime=0), digest)

    def response(self, request: Request) -> Response:
        loaded = self._file
        gzipped = request.accept_encodings["gzip"] > 0
        etag = loaded.etag + ("-gz" if gzipped else "")
        headers = {
            "Cache-Control": f"public, max-age={self.max_age}",
            "ETag": f'"{etag}"',
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if request.if_none_match.contains_weak(etag):
            return Response(status=304, headers=headers)
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        body = loaded.gzipped if gzipped else loaded.raw
        return Response(body, headers=headers, content_type=self.media_type)


WIDGET_SCRIPT = StaticAsset("widget.js", "application/javascript; charset=utf-8")
