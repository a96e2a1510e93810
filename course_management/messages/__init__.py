"""The wire messages: one module per record this service writes or reads on Kafka, each
with its typed value, `encode` (to the record its Avro schema in schemas/ names) and
`decode` (from that record as the codec decoded it). Pure: no I/O.

module            topic (schema in schemas/)       written by -> read by
course_command    course-commands                  gateways/writes -> streams/agent
command_reply     the reply topics                 streams/batch -> gateways/writes
user_enrolled     user-enrolled                    other services, gateways/writes
                                                   -> streams/router, streams/agent
item_progress     course-progress                  (the same)
course_event      course-events                    streams/course_handlers
                                                   -> sinks (the mirror), other services
enrollment_event  enrollment-events                streams/enrollment_handlers
                                                   -> sinks (the mirror), other services
catalog_entry     course-management-catalog        streams/batch -> sinks (the catalog)
rating_entry      course-management-ratings        streams/course_handlers -> sinks (mirror)

A value a store takes as a mapping (the events, the catalog entry) is a TypedDict; the
others are dataclasses.
"""
