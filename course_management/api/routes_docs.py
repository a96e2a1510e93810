"""Interactive API docs: `GET /docs`, Swagger UI over this service's OpenAPI document.

The Swagger UI files come from the `swagger-ui-py` package (Swagger UI 5, which reads
OpenAPI 3.1) and are served by the service itself: the page needs no outside network.
Only the four files the page loads are served, by name.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aiohttp import web

from course_management.api.openapi import Endpoint, Param
from course_management.api.problems import Problem


def _assets_folder() -> Path:
    """swagger-ui-py's bundled files (found without importing the package, whose
    framework adapters this service does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>MoocFlix course-management-service: API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script>
    window.onload = () => {
      window.ui = SwaggerUIBundle({
        url: "/openapi.json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        displayRequestDuration: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "BaseLayout",
      });
    };
  </script>
</body>
</html>
"""


async def docs(request: web.Request) -> web.StreamResponse:
    return web.Response(text=PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})


async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise Problem.of(404, "not-found", f"no docs asset named {name!r}")
    return web.FileResponse(
        _assets_folder() / name,
        headers={"Content-Type": ASSETS[name], "Cache-Control": "public, max-age=86400"},
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/docs",
        docs,
        "Interactive API docs (Swagger UI over /openapi.json)",
        "operations",
        auth=False,
        responses={200: ("An HTML page", {"type": "string"})},
        content_type="text/html",
        response_headers={200: ("Cache-Control",)},
    ),
    Endpoint(
        "GET",
        "/docs/assets/{name}",
        docs_asset,
        "A file of the docs page (Swagger UI's script, style sheet or icon)",
        "operations",
        auth=False,
        responses={200: ("The file", {"type": "string"})},
        response_headers={200: ("Cache-Control",)},
        errors=(404,),
        params=(Param("name", "path", "The file's name", required=True),),
        content_types=tuple(dict.fromkeys(ASSETS.values())),
    ),
]
