"""The API's interactive documentation, offline: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

Their scripts and styles are the ones shipped in the ``fastapi-offline`` package, served by the
gateway under ``/docs/assets/`` with the storefront's validators and gzip, so the pages work
with no internet (FastAPI's defaults load them from a CDN). The assets are read and compressed
on the first request for one of them, not when a gateway is built.
"""

from __future__ import annotations

from functools import cached_property
from importlib.resources import files

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

from marquee.web.site import Asset

ASSETS = "/docs/assets/"
_PACKAGE = "fastapi_offline"
_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


class ApiDocs:
    """The two pages for the document at ``openapi_url``, and the files they load."""

    def __init__(self, openapi_url: str = "/openapi.json", title: str = "Marquee API") -> None:
        self.swagger = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=ASSETS + "swagger-ui-bundle.js",
            swagger_css_url=ASSETS + "swagger-ui.css",
            swagger_favicon_url=ASSETS + "favicon.png",
        )
        self.redoc = get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=ASSETS + "redoc.standalone.js",
            redoc_favicon_url=ASSETS + "favicon.png",
            with_google_fonts=False,
        )

    @cached_property
    def assets(self) -> dict[str, Asset]:
        folder = files(_PACKAGE) / "static"
        return {ASSETS + name: Asset.of(name, (folder / name).read_bytes()) for name in _FILES}

    def find(self, path: str) -> Asset | None:
        """The asset that answers ``path``, or None."""
        if not path.startswith(ASSETS):
            return None
        return self.assets.get(path)
