"""The event-driven API as an AsyncAPI 3.0 document, generated from topology.py (every
topic, its key, its settings, who reads it) and schemas/*.avsc (the Avro payloads), and
served beside the OpenAPI document at /asyncapi.json. Validated in the tests with the
AsyncAPI project's own parser (tools/asyncapi, tests/unit/test_asyncapi.py)."""

from __future__ import annotations

import json
from typing import Any

from course_management.infra.avro import load_schema_text
from course_management.topology import (
    APP_ID,
    COURSE_CATALOG,
    COURSE_COMMANDS,
    COURSE_COMPLETIONS,
    COURSE_EVENTS,
    COURSE_PROGRESS,
    COURSE_RATINGS,
    ENROLLMENT_EVENTS,
    ENROLLMENT_INPUTS,
    JOB_PROGRESS,
    LEARNER_MILESTONES,
    POSTGRES_GROUP,
    ROUTER_GROUP,
    SEARCH_GROUP,
    TOPICS,
    USER_ENROLLED,
    WEBHOOK_GROUP,
    WEBHOOK_POSITIONS,
    WEBHOOKS,
)

AVRO = "application/vnd.apache.avro+json;version=1.9.0"

# Who writes and who reads each topic with a schema, and what its key is.
_TOPICS: dict[str, dict[str, Any]] = {
    COURSE_COMMANDS: {
        "key": "course id",
        "this_service": "send",
        "summary": "Commands of this service's API for the course agent (internal)",
        "readers": [APP_ID],
    },
    COURSE_EVENTS: {
        "key": "course id",
        "this_service": "send",
        "summary": "course_created, course_updated, course_deleted, with the course's snapshot",
        "readers": [POSTGRES_GROUP, "other services"],
    },
    ENROLLMENT_EVENTS: {
        "key": "course id",
        "this_service": "send",
        "summary": "enrollment_created, enrollment_cancelled, progress_updated, course_completed",
        "readers": [POSTGRES_GROUP, "other services"],
    },
    LEARNER_MILESTONES: {
        "key": "course id",
        "this_service": "send",
        "summary": "module_unlocked, waitlisted, waitlist_left (and later kinds: event_type "
        "is a string), per learner",
        "readers": ["other services", POSTGRES_GROUP],
    },
    USER_ENROLLED: {
        "key": "any (other services may key it as they like); this service uses the course id",
        "this_service": "receive",
        "summary": "A user enrolled in a course (produced by any service, and by this one)",
        "readers": [ROUTER_GROUP],
    },
    COURSE_PROGRESS: {
        "key": "any; this service uses the course id",
        "this_service": "receive",
        "summary": "A user's progress on one item (produced by any service, and by this one)",
        "readers": [ROUTER_GROUP],
    },
    COURSE_CATALOG: {
        "key": "course id (compacted)",
        "this_service": "send",
        "summary": "Internal: each course's catalog document after every change it shows",
        "readers": [POSTGRES_GROUP, SEARCH_GROUP],
    },
    COURSE_COMPLETIONS: {
        "key": "<user id>:<course id> (compacted)",
        "this_service": "send",
        "summary": "Internal: each learner's completed courses (course prerequisites)",
        "readers": ["every worker (no group): streams/completions.py"],
    },
    JOB_PROGRESS: {
        "key": "course id",
        "this_service": "send",
        "summary": "Internal: a bulk enrolment job's counts and rows after each chunk applied",
        "readers": [POSTGRES_GROUP],
    },
    WEBHOOKS: {
        "key": "subscription id (compacted)",
        "this_service": "send",
        "summary": "Internal: each webhook subscription as it is now (its secret sealed)",
        "readers": ["every worker (no group): streams/webhook_registry.py", WEBHOOK_GROUP],
    },
    WEBHOOK_POSITIONS: {
        "key": "subscription id (compacted)",
        "this_service": "send",
        "summary": "Internal: how far each webhook subscription's deliveries have got",
        "readers": ["every worker (no group): streams/webhook_registry.py"],
    },
    COURSE_RATINGS: {
        "key": "<course id>:<user id> (compacted)",
        "this_service": "send",
        "summary": "Internal: each student's rating of a course as it is now",
        "readers": [POSTGRES_GROUP],
    },
}


def _name(topic: str) -> str:
    return topic.replace("-", "_").replace(".", "_")


def asyncapi_document(version: str = "1.0.0") -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in TOPICS:
        about = _TOPICS.get(spec.name)
        if spec.schema_file is None or about is None:
            continue
        schema = json.loads(load_schema_text(spec.schema_file))
        name = _name(spec.name)
        messages[name] = {
            "name": schema.get("name", name),
            "title": schema.get("name", name),
            "summary": schema.get("doc", about["summary"])[:500],
            "contentType": "application/octet-stream",
            "headers": {
                "type": "object",
                "properties": {
                    "x-request-id": {
                        "type": "string",
                        "description": "The HTTP request that caused it, when one did",
                    }
                },
            },
            "payload": {"schemaFormat": AVRO, "schema": schema},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": about["key"]},
                    "schemaIdLocation": "payload",
                    "schemaIdPayloadEncoding": "confluent",
                    "bindingVersion": "0.5.0",
                }
            },
        }
        channels[name] = {
            "address": spec.name,
            "title": spec.name,
            "summary": about["summary"],
            "description": (
                f"Registry subject `{spec.subject}`. Read by: {', '.join(about['readers'])}. "
                f"Topic settings: {json.dumps(spec.config, sort_keys=True)}."
            ),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "kafka": {
                    "topic": spec.name,
                    "topicConfiguration": _topic_configuration(spec.config),
                    "bindingVersion": "0.5.0",
                }
            },
        }
        action = about["this_service"]
        operations[f"{action}_{name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": ("This service publishes " if action == "send" else "This service reads ")
            + spec.name,
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
        for group in about["readers"]:
            if group.startswith(APP_ID) and action == "send":
                operations[f"receive_{name}_{_name(group)}"] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{name}"},
                    "summary": f"Consumer group {group} reads it",
                    "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
                    "bindings": {
                        "kafka": {
                            "groupId": {"type": "string", "enum": [group]},
                            "bindingVersion": "0.5.0",
                        }
                    },
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "course-management-service events",
            "version": version,
            "description": (
                "The topics this service writes and reads (CONTRACT §4, §5.5). Payloads are"
                " Avro in the Confluent wire format (a magic byte and the schema id, then"
                " the record); the schemas are registered under `<topic>-value`. Records"
                " keyed by course id are ordered per course. Every record that cannot be"
                f" used goes to `<topic>.dlq` (internal input: `{ENROLLMENT_INPUTS}.dlq`)."
            ),
        },
        "defaultContentType": "application/octet-stream",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _topic_configuration(config: dict[str, str]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    if "cleanup.policy" in config:
        shown["cleanup.policy"] = [config["cleanup.policy"]]
    if "retention.ms" in config:
        shown["retention.ms"] = int(config["retention.ms"])
    if "max.message.bytes" in config:
        shown["max.message.bytes"] = int(config["max.message.bytes"])
    return shown
