"""The package stays easy to enter: small modules, few top-level modules, and the README's
map names modules that exist. (Layers and the absence of import cycles: `lint-imports`.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "course_management"
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 6


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_at_most_six_top_level_modules() -> None:
    top = sorted(
        path.stem
        for path in PACKAGE.glob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    )
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_route_modules_import_no_other_route_module() -> None:
    """What routes share lives in shared modules (api/route_helpers.py, api/http.py, ...)."""
    routes = sorted((PACKAGE / "api").glob("routes_*.py"))
    assert routes
    crossing = {
        path.name: found
        for path in routes
        if (found := re.findall(r"course_management\.api\.(routes_\w+)", path.read_text()))
    }
    assert crossing == {}


def test_every_module_the_readme_and_the_architecture_name_exists() -> None:
    named = set()
    for doc in ("README.md", "docs/architecture.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        named |= set(
            re.findall(
                r"`(?:course_management/)?((?:api|catalog|domain|infra|gateways|ops|sinks|streams|tables)/[a-z_]+\.py)",
                text,
            )
        )
    assert named, "the docs name modules"
    missing = sorted(path for path in named if not (PACKAGE / path).exists())
    assert missing == []


def test_every_layer_is_named_in_the_contracts() -> None:
    """A new top-level package or module is placed in the layers and forbidden to the domain
    (pyproject.toml's import-linter contracts), or lint-imports would not check it."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    layered = {name.strip() for layer in layers for name in layer.split("|")}
    ground = next(c for c in contracts if c["name"].startswith("The domain is the ground floor"))
    tops = {
        f"course_management.{path.stem if path.suffix else path.name}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem not in ("__init__", "__main__"))
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert tops - layered == set()
    assert tops - set(ground["forbidden_modules"]) == {"course_management.domain"}


def test_the_readme_and_the_architecture_draw_one_map() -> None:
    """README "How it works" and docs/architecture.md open with the same picture."""

    def first_picture(text: str, after: str) -> str:
        start = text.index("```\n", text.index(after)) + 4
        return text[start : text.index("```\n", start)]

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert first_picture(readme, "## How it works") == first_picture(architecture, "# Architecture")
