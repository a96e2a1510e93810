# syntax=docker/dockerfile:1
# Build stage: compilers are here only (rocksdict, fastavro and asyncpg ship wheels, but a
# platform without them would build from source).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY course_management ./course_management
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

# Runtime stage: the virtualenv, the schemas, a non-root user; no build tools.
FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY schemas ./schemas
RUN mkdir -p /app/data && chown app:app /app/data
ENV PATH=/opt/venv/bin:$PATH \
    CMS_SCHEMAS_DIR=/app/schemas \
    DATA_DIR=/app/data \
    HTTP_PORT=8080 \
    PYTHONUNBUFFERED=1
USER app
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status==200 else 1)"
ENTRYPOINT ["course-management"]
CMD ["worker"]
