"""Kong's declarative configuration (config/kong/kong.yml) against the OpenAPI document:
every public operation has exactly one route, the operational ones (/metrics, /healthz,
/readyz) have none, no route leads nowhere, and JWT is checked on exactly the operations
that need a token. (Kong itself cannot run here; the gateway that runs is HAProxy.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from course_management.api.app import ENDPOINTS

KONG = Path(__file__).resolve().parents[2] / "config" / "kong" / "kong.yml"
INTERNAL = {"/metrics", "/healthz", "/readyz"}


def _routes() -> list[dict[str, Any]]:
    config = yaml.safe_load(KONG.read_text())
    assert config["_format_version"] == "3.0"
    (service,) = config["services"]
    return list(service["routes"])


def _concrete(path: str) -> str:
    """An OpenAPI path with each parameter filled in (as a request would have it)."""
    return re.sub(r"\{[^}]+\}", "some-id", path)


def _matches(route: dict[str, Any], method: str, path: str) -> bool:
    """Kong 3's regex paths (`~...`) match from the path's start; each ends with `$`."""
    return method in route["methods"] and any(
        re.match(p.removeprefix("~"), path) for p in route["paths"] if p.startswith("~")
    )


def test_every_operation_has_one_route_and_internal_ones_none() -> None:
    routes = _routes()
    for endpoint in ENDPOINTS:
        matching = [
            r["name"] for r in routes if _matches(r, endpoint.method, _concrete(endpoint.path))
        ]
        if endpoint.path in INTERNAL:
            assert not matching, f"{endpoint.path} must not be reachable through the gateway"
        else:
            assert len(matching) == 1, f"{endpoint.method} {endpoint.path}: routes {matching}"


def test_no_route_leads_nowhere() -> None:
    operations = [(e.method, _concrete(e.path)) for e in ENDPOINTS]
    for route in _routes():
        assert all(p.startswith("~") and p.endswith("$") for p in route["paths"]), route["name"]
        for method in route["methods"]:
            for pattern in route["paths"]:
                assert any(
                    m == method and re.match(pattern.removeprefix("~"), p) for m, p in operations
                ), f"{route['name']}: {method} {pattern} matches no operation"


def test_jwt_is_checked_on_exactly_the_operations_that_need_a_token() -> None:
    routes = _routes()
    for endpoint in ENDPOINTS:
        if endpoint.path in INTERNAL:
            continue
        (route,) = [r for r in routes if _matches(r, endpoint.method, _concrete(endpoint.path))]
        plugins = {p["name"] for p in route.get("plugins", [])}
        assert ("jwt" in plugins) == endpoint.auth, f"{endpoint.method} {endpoint.path}"


def test_the_gateway_sets_the_request_id_and_limits_bodies_as_the_service_does() -> None:
    from course_management.api.http import MAX_BODY_BYTES

    (service,) = yaml.safe_load(KONG.read_text())["services"]
    plugins = {p["name"]: p["config"] for p in service["plugins"]}
    assert plugins["correlation-id"]["header_name"] == "X-Request-ID"
    size = plugins["request-size-limiting"]
    assert (
        size["size_unit"] == "megabytes" and size["allowed_payload_size"] * 2**20 == MAX_BODY_BYTES
    )
