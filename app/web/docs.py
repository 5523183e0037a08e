"""``/docs`` (Swagger UI) and ``/redoc`` without a CDN.

FastAPI's built-in pages load their scripts and styles from jsDelivr, which an offline lab (or
a locked-down one) cannot reach. The same pages are served here with the assets the
``fastapi-offline`` wheel ships (its ``static/`` folder: swagger-ui-bundle.js, swagger-ui.css,
redoc.standalone.js); only the asset files are used, not its FastAPI subclass.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def mount_offline_docs(application: FastAPI) -> None:
    """Serve the API docs pages; create the app with ``docs_url=None, redoc_url=None``."""
    application.mount(
        ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets"
    )
    title = application.title

    # Plain Starlette routes (as FastAPI's own docs routes are), public like them.
    async def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=application.openapi_url or "/openapi.json",
            title=f"{title} · API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    async def redoc(_request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=application.openapi_url or "/openapi.json",
            title=f"{title} · API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    application.add_route("/docs", swagger_ui, include_in_schema=False)
    application.add_route("/redoc", redoc, include_in_schema=False)
