"""The Kubernetes manifests as they are deployed: `kustomize build` of the base and of each
overlay, every object validated strictly (unknown fields refused) against the Kubernetes
schemas bundled in `kubernetes-validate`, and the custom resources (KongPlugin) against
the schema kept in k8s/schemas. No API server can run here; this is what can be checked
without one."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from course_management.config import Settings
from devstack.downloads import kustomize_binary

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = "1.31.0"  # the oldest version the deployment supports
BUILDS = {"base": ROOT / "k8s" / "base", "split-sinks": ROOT / "k8s" / "overlays" / "split-sinks"}
CUSTOM = {"KongPlugin": ROOT / "k8s" / "schemas" / "kongplugin.schema.json"}
SETTINGS = {name.upper() for name in Settings.model_fields}


def _build(folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run(
        [str(kustomize_binary()), "build", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc]


def _validate(doc: dict[str, Any]) -> None:
    if doc["kind"] in CUSTOM:
        jsonschema.validate(doc, json.loads(CUSTOM[doc["kind"]].read_text()))
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_object_of_the_build_is_valid(build: str) -> None:
    docs = _build(BUILDS[build])
    assert {"StatefulSet", "Service", "ConfigMap", "Job", "Ingress", "NetworkPolicy"} <= {
        d["kind"] for d in docs
    }
    for doc in docs:
        _validate(doc)


def test_a_mistyped_field_is_refused() -> None:
    """The strict check can fail: one field misspelt in the StatefulSet and in a KongPlugin."""
    docs = _build(BUILDS["base"])
    worker = copy.deepcopy(next(d for d in docs if d["kind"] == "StatefulSet"))
    worker["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES, strict=True)
    plugin = copy.deepcopy(next(d for d in docs if d["kind"] == "KongPlugin"))
    plugin["config"]["minutes"] = plugin["config"].pop("minute")
    with pytest.raises(jsonschema.ValidationError):
        _validate(plugin)


def test_the_workers_probe_health_and_readiness_and_spread_out() -> None:
    docs = _build(BUILDS["base"])
    worker = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = worker["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_every_configmap_key_is_a_setting() -> None:
    for build, folder in BUILDS.items():
        config = next(d for d in _build(folder) if d["kind"] == "ConfigMap")
        unknown = set(config["data"]) - SETTINGS
        assert not unknown, f"{build}: {sorted(unknown)} are not settings"


def test_the_split_sinks_overlay_moves_the_sinks_out_of_the_workers() -> None:
    docs = _build(BUILDS["split-sinks"])
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["RUN_SINKS"] == "false"
    sink = next(d for d in docs if d["kind"] == "Deployment")
    assert sink["spec"]["template"]["spec"]["containers"][0]["args"] == ["sink"]
