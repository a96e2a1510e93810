"""`GET /docs` in a real browser: headless Chromium (Debian's) renders the Swagger UI page
the service serves itself, every operation of the OpenAPI document is listed on it, and a
screenshot is kept (docs/api-docs.png)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from course_management.api.app import openapi_document
from tests.support import WorkerProcess, http_get_text

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "api-docs.png"
# Each operation's block: its method in the class, then its path in `data-path`.
OPERATION = re.compile(r'class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]+)"', re.S)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed (scripts/bootstrap.sh installs it)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    flags += ["--hide-scrollbars", "--virtual-time-budget=20000"]
    return subprocess.run(
        [browser, *flags, *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def test_the_docs_page_lists_every_operation_in_a_real_browser(worker: WorkerProcess) -> None:
    page = f"{worker.base_url}/docs"
    assert "swagger-ui-bundle.js" in http_get_text(page)
    dom = _chromium("--dump-dom", page).stdout
    listed = {(method.upper(), path) for method, path in OPERATION.findall(dom)}
    documented = {
        (method.upper(), path)
        for path, operations in openapi_document()["paths"].items()  # type: ignore[attr-defined]
        for method in operations
    }
    assert documented, "the OpenAPI document lists no operation"
    assert documented <= listed, f"not on the page: {sorted(documented - listed)}"
    SCREENSHOT.unlink(missing_ok=True)
    _chromium(f"--screenshot={SCREENSHOT}", "--window-size=1280,2200", page)
    assert SCREENSHOT.stat().st_size > 10_000  # a rendered page, not a blank one
