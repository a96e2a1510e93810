"""The AsyncAPI document (issue 24, item 15): generated from topology.py and schemas/,
served at /asyncapi.json, and valid for the AsyncAPI project's own parser (its npm
package, installed by scripts/bootstrap.sh into tools/asyncapi), Avro payloads included."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from course_management.api.asyncapi import asyncapi_document
from course_management.topology import TOPICS

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "asyncapi"


def test_the_document_is_valid_for_the_asyncapi_parser(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is not installed (scripts/bootstrap.sh installs nodejs)"
    assert (TOOL / "node_modules" / "@asyncapi" / "parser").exists(), (
        "the AsyncAPI parser is not installed: scripts/bootstrap.sh runs npm in tools/asyncapi"
    )
    document = tmp_path / "asyncapi.json"
    document.write_text(json.dumps(asyncapi_document()))
    done = subprocess.run(
        [node, str(TOOL / "validate.mjs"), str(document)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid: 12 channels" in done.stdout


def test_every_topic_with_a_schema_is_a_channel_with_that_schema() -> None:
    document = asyncapi_document()
    addresses = {c["address"]: c for c in document["channels"].values()}
    with_schema = {t.name: t for t in TOPICS if t.schema_file and not t.name.endswith(".dlq")}
    assert set(addresses) == set(with_schema)
    for name, spec in with_schema.items():
        [message] = addresses[name]["messages"].values()
        ref = message["$ref"].rsplit("/", 1)[-1]
        payload = document["components"]["messages"][ref]["payload"]["schema"]
        assert payload == json.loads((ROOT / "schemas" / str(spec.schema_file)).read_text())
    actions = {op["action"] for op in document["operations"].values()}
    assert actions == {"send", "receive"}
