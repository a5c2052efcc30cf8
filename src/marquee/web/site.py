"""The storefront's files, read once into memory and answered with validators and gzip.

The front end is a handful of small static files (plain ES modules, no build step). They are
loaded when the gateway is built, so a page request does no disk I/O: it is a dictionary look-
up and, at most, one header comparison. Paths:

- ``/assets/<file>``: a file of ``static/`` (``index.html`` excepted);
- ``/`` and the front end's own routes (``APP_PATHS`` and anything under them): ``index.html``,
  so a bookmarked or reloaded ``/shows/show-5678`` opens the page the script then renders;
- anything else: not the storefront's: the gateway answers its usual 404 problem, or, to a
  browser asking for a page, ``index.html`` with status 404 (the front end's not-found page).

Every answer carries a strong ``ETag`` and ``Cache-Control: no-cache``: file names carry no
content hash (there is no build step), so browsers revalidate, and a 304 costs a few bytes.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from starlette.responses import Response

ASSET_PREFIX = "/assets/"
INDEX = "index.html"
# The front end's routes (see static/app.js); the page for each is index.html.
APP_PATHS: tuple[str, ...] = ("/shows", "/orders", "/login", "/register", "/console")

_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
# Compression pays off only for text, and only when it saves something worth a header.
_COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".json", ".txt")
_MIN_GZIP_SAVING = 256

# The pages load only their own files and talk only to their own origin.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_COMMON_HEADERS: dict[str, str] = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "vary": "Accept-Encoding",
}
_HTML_HEADERS: dict[str, str] = {
    "content-security-policy": _CSP,
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as served: its bytes, gzip form when worth it, type and validator."""

    name: str
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        suffix = name[name.rfind(".") :] if "." in name else ""
        packed: bytes | None = None
        if suffix in _COMPRESSIBLE:
            candidate = gzip.compress(body, compresslevel=9, mtime=0)
            if len(body) - len(candidate) >= _MIN_GZIP_SAVING:
                packed = candidate
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(
            name=name,
            body=body,
            gzipped=packed,
            content_type=_TYPES.get(suffix, "application/octet-stream"),
            etag=f'"{digest}"',
        )


class Storefront:
    """The storefront's files by URL path. ``files`` maps file names to contents and must
    hold ``index.html``."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        if INDEX not in files:
            raise ValueError(f"the storefront needs an {INDEX}")
        self.index = Asset.of(INDEX, files[INDEX])
        self.assets: dict[str, Asset] = {
            ASSET_PREFIX + name: Asset.of(name, body)
            for name, body in files.items()
            if name != INDEX
        }

    @classmethod
    def from_directory(cls, directory: Traversable) -> Storefront:
        """Every regular file directly in ``directory`` (the front end has no sub-folders)."""
        return cls(
            {
                entry.name: entry.read_bytes()
                for entry in directory.iterdir()
                if entry.is_file() and not entry.name.startswith(".")
            }
        )

    @classmethod
    def from_package(cls) -> Storefront:
        """The files shipped in ``marquee/web/static``."""
        return cls.from_directory(files("marquee.web") / "static")

    def find(self, path: str) -> Asset | None:
        """The file that answers ``path`` (decoded, without the query), or None."""
        if path.startswith(ASSET_PREFIX):
            return self.assets.get(path)
        if path == "/" or _is_app_path(path):
            return self.index
        return None

    def response(self, asset: Asset, headers: Iterable[tuple[bytes, bytes]]) -> Response:
        """``asset`` for a request with these (ASGI) headers (see ``asset_response``)."""
        return asset_response(asset, headers)

    def not_found(self, path: str, headers: Iterable[tuple[bytes, bytes]]) -> Response | None:
        """For a browser opening an unknown page (not the API's, not an asset), the front end
        with status 404, so that it shows the site's own not-found page; else None."""
        if path.startswith(("/api/", ASSET_PREFIX)):
            return None
        accept = b""
        for key, value in headers:
            if key == b"accept":
                accept = value
        if b"text/html" not in accept:
            return None
        out = dict(_COMMON_HEADERS)
        out.update(_HTML_HEADERS)
        out["content-type"] = self.index.content_type
        return Response(self.index.body, status_code=404, headers=out)


def asset_response(asset: Asset, headers: Iterable[tuple[bytes, bytes]]) -> Response:
    """``asset`` for a request with these (ASGI) headers: 304 when the client's copy is
    current, gzip when the client takes it."""
    if_none_match: bytes | None = None
    accept_encoding = b""
    for key, value in headers:
        if key == b"if-none-match":
            if_none_match = value
        elif key == b"accept-encoding":
            accept_encoding = value
    out = dict(_COMMON_HEADERS)
    out["etag"] = asset.etag
    if asset.name == INDEX:
        out.update(_HTML_HEADERS)
    if if_none_match is not None and _matches(if_none_match.decode("latin-1"), asset.etag):
        return Response(status_code=304, headers=out)
    out["content-type"] = asset.content_type
    if asset.gzipped is not None and _takes_gzip(accept_encoding):
        out["content-encoding"] = "gzip"
        return Response(asset.gzipped, headers=out)
    return Response(asset.body, headers=out)


def _is_app_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in APP_PATHS)


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match asks."""
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _takes_gzip(accept_encoding: bytes) -> bool:
    for part in accept_encoding.decode("latin-1").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() != "gzip":
            continue
        # "gzip;q=0" means "not gzip".
        q = params.strip().removeprefix("q=").strip()
        return not (params.strip().startswith("q=") and _is_zero(q))
    return False


def _is_zero(quality: str) -> bool:
    try:
        return float(quality) == 0.0
    except ValueError:
        return False
