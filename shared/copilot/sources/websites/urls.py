"""URL rules of the website crawler: normalisation, what counts as the same site, stable keys."""

from __future__ import annotations

import base64
import hashlib
import re
from email.header import decode_header, make_header
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

# Query parameters that only track campaigns: the same page under another name.
_TRACKING_PARAMS = re.compile(r"^(utm_[a-z]+|gclid|fbclid|msclkid|mc_cid|mc_eid)$", re.IGNORECASE)
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_PCT = re.compile(r"%[0-9a-fA-F]{2}")
_PAGE_EXT = re.compile(r"\.(html?|xhtml|php|aspx?|jsp)$", re.IGNORECASE)


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical spelling of an http(s) URL, or None if it is not a web address.

    Resolves ``url`` against ``base``, lower-cases scheme and host, drops user info, default
    ports and the fragment, removes dot segments, percent-encodes what must be, sorts the query
    parameters and drops campaign-tracking ones.
    """
    url = url.strip()
    if not url:
        return None
    try:
        if base is not None:
            url = urljoin(base, url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # malformed (bad port, bad IPv6 literal)
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(parts.path or "/")
    path = _PCT.sub(lambda m: m.group(0).upper(), quote(path, safe=_PATH_SAFE))
    pairs = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not _TRACKING_PARAMS.match(k)
    ]
    query = urlencode(sorted(pairs), quote_via=quote)
    return urlunsplit((scheme, netloc, path, query, ""))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for paths that did not go through urljoin."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def site_host(url: str) -> tuple[str, int | None]:
    """Host (without a leading ``www.``) and explicit port: www.example.com is example.com."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    port = parts.port
    return host, None if port == DEFAULT_PORTS.get(parts.scheme) else port


def site_label(url: str) -> str:
    """The site's folder name in the bucket: ``example.com``, ``127.0.0.1_8080``."""
    host, port = site_host(url)
    label = host.strip("[]").replace(":", "-")  # IPv6 literals
    return f"{label}_{port}" if port else label


class SiteScope:
    """Which URLs belong to the sites of the start URLs.

    Same host (``www.`` or not) and port, and the start URL's scheme; an http site may also move
    to https (an upgrade, not another site), never the reverse.
    """

    def __init__(self, start_urls: list[str]) -> None:
        self._sites: dict[tuple[str, int | None], set[str]] = {}
        for url in start_urls:
            scheme = urlsplit(url).scheme
            schemes = self._sites.setdefault(site_host(url), set())
            schemes.update({scheme, "https"} if scheme == "http" else {scheme})

    def contains(self, url: str) -> bool:
        schemes = self._sites.get(site_host(url))
        return schemes is not None and urlsplit(url).scheme in schemes


def page_slug(url: str, max_len: int = 60) -> str:
    """Readable part of a page's object name, from its path: /docs/Getting%20Started.html ->
    docs-getting-started."""
    path = _PAGE_EXT.sub("", unquote(urlsplit(url).path))
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
    return slug[:max_len].strip("-") or "index"


def page_key(copilot_id: str, label: str, url: str) -> str:
    """Stable object key of a crawled page: the same URL always maps to the same key."""
    digest = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{copilot_id}/web/{label}/{page_slug(url)}-{digest}.html"


def metadata_text(value: str, max_chars: int = 200) -> str:
    """An S3 user-metadata value from any text: S3 (and botocore) accept only ASCII, so other
    text is sent as RFC 2047 encoded words, which S3 itself understands. ``read_metadata_text``
    turns it back."""
    value = " ".join(value.split())[:max_chars]
    if value.isascii():
        return value
    words: list[str] = []
    piece = ""
    for char in value:  # encoded words of at most 75 characters, never splitting a character
        if len((piece + char).encode()) > 45:
            words.append(piece)
            piece = ""
        piece += char
    words.append(piece)
    return " ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words)


def read_metadata_text(value: str) -> str:
    """The text of a metadata value written by ``metadata_text`` (plain ASCII stays as is)."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value
