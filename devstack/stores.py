"""The local stack's stores: PostgreSQL and Redis from Debian, S3 (Versity S3 Gateway) from
the Go module proxy."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from devstack.processes import HOST, chown_to, free_port, logs_to, unprivileged, wait_until

log = logging.getLogger(__name__)

PG_BIN = Path(os.environ.get("CMS_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgreSQL:
    """PostgreSQL from Debian's packages, started with pytest-postgresql's executor."""

    workdir: Path
    name: str = "postgresql"
    port: int = field(default_factory=free_port)
    dbname: str = "course_management"
    _exec: Any = None

    def prepare(self) -> None:
        """Write the pg_ctl wrapper before the servers start in parallel: a script being
        written while another thread forks can be "Text file busy" when executed."""
        base = self.workdir / "postgresql"
        base.mkdir(parents=True, exist_ok=True)
        if not (PG_BIN / "pg_ctl").exists():
            raise RuntimeError(f"{PG_BIN / 'pg_ctl'} not found: apt-get install postgresql")
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            wrapper = base / "pg_ctl"
            wrapper.write_text(
                f'#!/bin/sh\nexec {" ".join(unprivileged("postgres"))} {PG_BIN / "pg_ctl"} "$@"\n'
            )
            wrapper.chmod(0o755)
            chown_to(base, "postgres")
            self.workdir.chmod(0o755)

    def start(self) -> None:
        from pytest_postgresql.executors import PostgreSQLExecutor

        base = self.workdir / "postgresql"
        pg_ctl = base / "pg_ctl" if os.geteuid() == 0 else PG_BIN / "pg_ctl"
        if not pg_ctl.exists():
            self.prepare()
        self._exec = PostgreSQLExecutor(
            executable=str(pg_ctl),
            host=HOST,
            port=self.port,
            datadir=str(base / "data"),
            unixsocketdir=str(base),
            logfile=str(base / "postgresql.log"),
            startparams="-w",
            dbname=self.dbname,
            user="postgres",
            password=None,  # trust on loopback: a throwaway local server
            postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        )
        self._exec.start()
        wait_until(self._accepts_queries, 60, "PostgreSQL")
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def _accepts_queries(self) -> bool:
        with psycopg.connect(self._dsn("postgres"), connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def _dsn(self, db: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{db}"

    def stop(self) -> None:
        if self._exec is not None:
            self._exec.stop()

    def restart(self) -> None:
        """Start again after `stop()`, on the same port with the same data."""
        self._exec.start()  # the executor keeps its data folder once initialised
        wait_until(self._accepts_queries, 60, "PostgreSQL")

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self._dsn(self.dbname)}

    def version(self) -> str:
        return f"PostgreSQL {self._exec.version if self._exec else '?'}"


@dataclass
class Redis:
    """redis-server from Debian's packages, started with pytest-redis's executor."""

    workdir: Path
    name: str = "redis"
    port: int = field(default_factory=free_port)
    _exec: Any = None

    def start(self) -> None:
        from pytest_redis.executor import RedisExecutor

        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(executable).exists():
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        datadir = self.workdir / "redis"
        datadir.mkdir(parents=True, exist_ok=True)
        self._exec = RedisExecutor(
            executable,
            databases=4,
            redis_timeout=30,
            loglevel="warning",
            host=HOST,
            port=self.port,
            datadir=datadir,
        )
        self._exec.start()

    def stop(self) -> None:
        if self._exec is not None:
            self._exec.stop()

    def stop_keeping_data(self) -> None:
        """Snapshot the data to disk, then stop (the next start loads the snapshot)."""
        import redis

        with redis.Redis(host=HOST, port=self.port) as client:
            client.save()
        self.stop()

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": f"redis://{HOST}:{self.port}/0"}

    def version(self) -> str:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        return "Redis " + out.split(" v=")[1].split()[0] if " v=" in out else "Redis"


@dataclass
class S3:
    """Versity S3 Gateway over a folder (its `posix` backend): a real S3 server that checks
    SigV4 signatures, presigned URLs' expiry, and the content type and length they signed,
    and does multipart uploads. Objects stay in the folder across a stop and a restart."""

    workdir: Path
    name: str = "s3"
    port: int = field(default_factory=free_port)
    bucket: str = "moocflix-course-content"
    access_key: str = "local"
    secret_key: str = "local-secret"
    _exec: Any = None

    def start(self) -> None:
        from mirakuru import TCPExecutor

        from devstack.downloads import versitygw_binary

        data = self.workdir / "s3-data"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            str(versitygw_binary()),
            "--access",
            self.access_key,
            "--secret",
            self.secret_key,
            "--port",
            f"{HOST}:{self.port}",
            "posix",
            str(data),
        ]
        self._exec = TCPExecutor(
            command, host=HOST, port=self.port, timeout=60, **logs_to(self.workdir / "s3.out")
        )
        self._exec.start()

    def stop(self) -> None:
        if self._exec is not None:
            self._exec.stop()

    def restart(self) -> None:
        """Serve again after `stop()`, the same folder (so the same buckets and objects)."""
        assert self._exec is not None, "start() first"
        self._exec.start()

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": f"http://{HOST}:{self.port}",
            "S3_BUCKET": self.bucket,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def version(self) -> str:
        from devstack.downloads import VERSITYGW_VERSION

        return f"Versity S3 Gateway {VERSITYGW_VERSION} (posix)"
