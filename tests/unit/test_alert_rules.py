"""The alert rules and the dashboard, checked by Prometheus's own promtool (Debian's
`prometheus` package; scripts/bootstrap.sh installs it):
- the rules load (`promtool check rules`) and behave as `alerts_test.yml` says
  (`promtool test rules`);
- every query of the Grafana dashboard parses (each is checked as a recording rule);
- every `cms_*` metric they name is one the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import course_management.infra.metrics  # noqa: F401  (registers the service's metrics)

CONFIG = Path(__file__).resolve().parents[2] / "config"
RULES = CONFIG / "prometheus" / "alerts.yml"
RULE_TESTS = CONFIG / "prometheus" / "alerts_test.yml"
DASHBOARD = CONFIG / "grafana" / "course-management.json"


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/bootstrap.sh installs prometheus)"
    done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _exported() -> set[str]:
    """Every series name the service's metrics can export (labelled metrics with no
    child yet have no samples, so the names come from the families)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_alert_rules_load_and_pass_their_unit_tests() -> None:
    assert "SUCCESS: 14 rules found" in _promtool("check", "rules", str(RULES))
    assert "SUCCESS" in _promtool("test", "rules", str(RULE_TESTS))


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 12
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    checked = tmp_path / "dashboard-rules.yml"
    checked.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(queries)} rules found" in _promtool("check", "rules", str(checked))


def test_the_rules_and_the_dashboard_name_only_metrics_the_service_exports() -> None:
    rules = yaml.safe_load(RULES.read_text())
    queries = [r["expr"] for g in rules["groups"] for r in g["rules"]] + _dashboard_queries()
    named = {name for q in queries for name in re.findall(r"\bcms_[a-z_]+", q)}
    exported = _exported()
    missing = named - exported
    assert named and not missing, f"not exported by the service: {sorted(missing)}"


def test_every_dead_letter_code_has_an_alert_and_every_alert_a_runbook_entry() -> None:
    """Issue 24, item 14: only `malformed` dead letters alerted."""
    from course_management.infra import dead_letters

    codes = {
        dead_letters.INVALID,
        dead_letters.MALFORMED,
        dead_letters.UNPROCESSABLE,
        dead_letters.ERROR,
        dead_letters.REFUSED,
    }
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    alerted = {code for code in codes for rule in rules if f'reason="{code}"' in str(rule["expr"])}
    assert alerted == codes
    runbook = (RULES.parents[2] / "docs" / "runbook.md").read_text()
    anchors = {
        "#" + re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("## ")
    }
    for rule in rules:
        link = rule["annotations"]["runbook"]
        assert link.startswith("docs/runbook.md#"), rule["alert"]
        assert link.removeprefix("docs/runbook.md") in anchors, (rule["alert"], link)
        assert rule["alert"] in runbook, f"the runbook does not name {rule['alert']}"
