"""The adapters behind the API's ports (api/ports.py), built by worker.py: `writes.py`
sends each write to the course agent over Kafka and awaits its reply; `reads.py` reads
Redis, then the local table, then the PostgreSQL mirror (catalog pages: catalog/search.py)."""
