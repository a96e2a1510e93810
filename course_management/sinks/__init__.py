"""The sinks: the consumer groups that write the derived stores from the topics.

- the PostgreSQL group: the mirror (course, enrollment and rating events: mirror.py) and
  the PostgreSQL catalog (catalog entries: catalog.py);
- the search group: the Elasticsearch index (catalog entries: catalog.py), when a node
  is set.

groups.py lists both groups with their handlers. A worker runs them beside its agents
(`RUN_SINKS=true`, the default); `course-management sink` runs them alone (process.py),
so that a deployment can scale them apart from the agents (issue 13, decision 42): they
share nothing with the agents but the topics, and each group shares its partitions among
all the processes that run it.
"""
