"""The local stack: real servers on 127.0.0.1, free ports, throwaway data folders.

Each server is started with a process-fixture library (mirakuru; pytest-postgresql's and
pytest-redis's executors; moto's threaded server), waited for with a readiness condition
and a deadline, and stopped cleanly. `LocalStack` starts them in parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import port_for
import psycopg
from mirakuru import HTTPExecutor, TCPExecutor
from mirakuru.base import Executor

from devstack import downloads

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SEARCH_USER = "cmsearch"  # Elasticsearch refuses to run as root
PG_BIN = Path(os.environ.get("CMS_PG_BIN", "/usr/lib/postgresql/15/bin"))


class Server(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def env(self) -> dict[str, str]: ...
    def version(self) -> str: ...


def wait_until(check: Callable[[], bool], deadline_s: float, what: str, every: float = 0.2) -> None:
    """Poll `check` until it is true; fail with `what` when the deadline passes."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            if check():
                return
        except Exception as exc:  # the check's own failure means "not yet"
            last = exc
        time.sleep(every)
    raise TimeoutError(f"{what} not ready after {deadline_s:.0f}s (last error: {last})")


def _logs(path: Path) -> dict[str, Any]:
    """Send a server's output to a file: an unread pipe would fill up and stall it."""
    out = path.open("ab")
    return {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": subprocess.STDOUT}


_HANDED_OUT: set[int] = set()  # never hand the same port to two servers of this process
_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    with _PORTS_LOCK:
        port = int(port_for.select_random(exclude_ports=_HANDED_OUT))
        _HANDED_OUT.add(port)
        return port


def _port_fields(server: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(server) if f.name.endswith("port")]


def _lost_a_port(server: Any, failure: str) -> bool:
    """Whether a failed start was another process taking one of the server's ports
    between choosing it and binding it."""
    if any(sign in failure for sign in ("in use", "BindException")):
        return True
    return any(not port_for.is_available(getattr(server, name)) for name in _port_fields(server))


def start_on_free_ports(server: Any, log_tail: Callable[[], str] = str) -> None:
    """Start a server; if another process took one of its ports between choosing and
    binding it, choose them afresh and start it once more."""
    try:
        server.start()
    except Exception as exc:
        with contextlib.suppress(Exception):
            server.stop()
        if not _lost_a_port(server, f"{exc}{log_tail()}"):
            raise
        log.warning("a port was taken; starting %s on new ports", server.name)
        for name in _port_fields(server):
            setattr(server, name, free_port())
        server.start()


def _unprivileged(user: str) -> list[str]:
    """A command prefix that drops root to `user`; nothing when not root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]


def _ensure_user(user: str) -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
        )


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=user, group=user)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                shutil.chown(Path(root) / name, user=user, group=user)


@dataclass
class KafkaServer:
    """Apache Kafka in KRaft combined mode (broker + controller), Java 17."""

    workdir: Path
    name: str = "kafka"
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    _exec: Executor | None = None

    def start(self) -> None:
        libs = downloads.kafka_libs()
        data = self.workdir / "kafka-data"
        data.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "kafka.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{HOST}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.cleaner.backoff.ms=1000",
                ]
            )
            + "\n"
        )
        java = f"{downloads.JAVA_17}/bin/java"
        classpath = f"{libs}/*"
        cluster_id = (
            subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ],
            check=True,
            capture_output=True,
        )
        log4j = self.workdir / "kafka-log4j2.properties"
        log4j.write_text(
            "rootLogger.level=WARN\nrootLogger.appenderRef.f.ref=f\n"
            f"appender.f.type=File\nappender.f.name=f\nappender.f.fileName={self.workdir}/kafka.log\n"
            "appender.f.layout.type=PatternLayout\nappender.f.layout.pattern=%d %p %c %m%n\n"
        )
        command = [
            java,
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ]
        self._exec = TCPExecutor(
            command,
            host=HOST,
            port=self.port,
            timeout=120,
            **_logs(self.workdir / f"{self.name}.out"),
        )
        self._exec.start()
        wait_until(self._broker_answers, 120, "Kafka broker")

    def _broker_answers(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"{HOST}:{self.port}"})
        metadata = admin.list_topics(timeout=2)
        return bool(metadata.brokers)

    def stop(self) -> None:
        if self._exec is not None:
            # The JVM answers SIGTERM with exit code 143 (128 + 15): a clean stop.
            self._exec.stop(expected_returncode=143)

    def restart(self) -> None:
        """Start again after `stop()`: same ports, same (already formatted) log folder."""
        assert self._exec is not None, "start() first"
        self._exec.start()
        wait_until(self._broker_answers, 120, "Kafka broker")

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{self.port}"}

    def version(self) -> str:
        return f"Apache Kafka {downloads.KAFKA_VERSION} (KRaft)"


@dataclass
class ApicurioRegistry:
    """Apicurio Registry serving the Confluent-compatible API; Java 21+. Its storage is an
    H2 database file in the stack's folder, so a restart (an outage) keeps the schemas."""

    workdir: Path
    name: str = "schema-registry"
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    _exec: Executor | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/apis/ccompat/v7"

    def start(self) -> None:
        home = downloads.apicurio_home()
        java = Path(downloads.JAVA_21_PLUS) / "bin" / "java"
        if not java.exists():
            raise RuntimeError(
                f"Apicurio Registry 3 needs Java 21+ ({java} missing): set CMS_JAVA21_HOME"
            )
        command = [
            f"{downloads.JAVA_21_PLUS}/bin/java",
            "-Xms128m",
            "-Xmx512m",
            f"-Dquarkus.http.port={self.port}",
            f"-Dquarkus.http.host={HOST}",
            f"-Dquarkus.management.port={self.management_port}",
            f"-Dquarkus.management.host={HOST}",
            "-Dquarkus.log.level=WARN",
            "-Dquarkus.log.file.enable=false",
            "-Dapicurio.storage.kind=sql",
            "-Dapicurio.storage.sql.kind=h2",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self.workdir / self.name / 'registry'}",
            "-Dapicurio.datasource.username=sa",
            "-Dapicurio.datasource.password=sa",
            "-jar",
            str(home / "quarkus-run.jar"),
        ]
        self._exec = HTTPExecutor(
            command,
            url=f"{self.url}/subjects",
            method="GET",
            status=200,
            timeout=120,
            cwd=str(self.workdir),
            **_logs(self.workdir / f"{self.name}.out"),
        )
        self._exec.start()

    def stop(self) -> None:
        if self._exec is not None:
            self._exec.stop(expected_returncode=143)  # Quarkus on SIGTERM

    def restart(self) -> None:
        """Start again after `stop`, with the schemas it had (an outage, not a new registry)."""
        assert self._exec is not None, "start() first"
        self._exec.start()

    def env(self) -> dict[str, str]:
        return {"SCHEMA_REGISTRY_URL": self.url}

    def version(self) -> str:
        return f"Apicurio Registry {downloads.APICURIO_VERSION} (ccompat v7, H2 file storage)"


@dataclass
class Elasticsearch:
    """A single Elasticsearch node from the integration-test distribution, Java 17."""

    workdir: Path
    name: str = "elasticsearch"
    port: int = field(default_factory=free_port)
    transport_port: int = field(default_factory=free_port)
    _exec: Executor | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        home = downloads.elasticsearch_home()
        _ensure_user(SEARCH_USER)
        base = self.workdir / "elasticsearch"
        config = base / "config"
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(home / "config", config)
        (base / "data").mkdir()
        (base / "logs").mkdir()
        (config / "elasticsearch.yml").write_text(
            "\n".join(
                [
                    "cluster.name: cms-local",
                    "node.name: cms-local",
                    f"network.host: {HOST}",
                    f"http.port: {self.port}",
                    f"transport.port: {self.transport_port}",
                    "discovery.type: single-node",
                    f"path.data: {base / 'data'}",
                    f"path.logs: {base / 'logs'}",
                    "xpack.security.enabled: false",
                    "cluster.routing.allocation.disk.threshold_enabled: false",
                    "action.destructive_requires_name: false",
                ]
            )
            + "\n"
        )
        (config / "jvm.options.d" / "heap.options").write_text("-Xms512m\n-Xmx512m\n")
        _chown(base, SEARCH_USER)
        self.workdir.chmod(0o755)
        command = [*_unprivileged(SEARCH_USER), str(home / "bin" / "elasticsearch")]
        self._exec = HTTPExecutor(
            command,
            url=f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s&master_timeout=1s",
            request_timeout=3,
            method="GET",
            status=200,
            timeout=180,
            envvars={
                "ES_JAVA_HOME": downloads.JAVA_17,
                "ES_PATH_CONF": str(config),
                "PATH": os.environ.get("PATH", ""),
            },
            **_logs(self.workdir / f"{self.name}.out"),
        )
        self._exec.start()

    def stop(self) -> None:
        if self._exec is not None:
            # The JVM answers SIGTERM with exit code 143 (128 + 15): a clean stop.
            self._exec.stop(expected_returncode=143)

    def restart(self) -> None:
        """Start again after `stop`, keeping the data (an outage, not a new node)."""
        assert self._exec is not None, "start() first"
        self._exec.start()

    def env(self) -> dict[str, str]:
        return {"SEARCH_URL": self.url}

    def version(self) -> str:
        return f"Elasticsearch {downloads.ELASTICSEARCH_VERSION} (integ-test distribution)"


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
                f'#!/bin/sh\nexec {" ".join(_unprivileged("postgres"))} {PG_BIN / "pg_ctl"} "$@"\n'
            )
            wrapper.chmod(0o755)
            _chown(base, "postgres")
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
    """moto's S3 server (a stand-in for AWS S3 that speaks its protocol), in a thread."""

    workdir: Path
    name: str = "s3"
    port: int = field(default_factory=free_port)
    bucket: str = "moocflix-course-content"
    _server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def restart(self) -> None:
        """Serve again after `stop()`: moto keeps its buckets in this process's memory."""
        self.start()

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": f"http://{HOST}:{self.port}",
            "S3_BUCKET": self.bucket,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local-secret",
        }

    def version(self) -> str:
        from importlib.metadata import version

        return f"moto[server] {version('moto')} (S3 API)"


class LocalStack:
    """Every server of the local stack, started in parallel, stopped in reverse."""

    def __init__(self, workdir: Path | None = None, *, search: bool = True) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cms-stack-"))
        self.servers: list[Any] = [
            KafkaServer(self.workdir),
            ApicurioRegistry(self.workdir),
            PostgreSQL(self.workdir),
            Redis(self.workdir),
            S3(self.workdir),
        ]
        if search:
            self.servers.append(Elasticsearch(self.workdir))
        self.started: list[Any] = []
        self.timings: dict[str, float] = {}

    def start(self) -> dict[str, str]:
        downloads.fetch_all()  # sequential: Maven's local repository is not concurrency-safe
        self.workdir.chmod(0o755)
        for server in self.servers:
            if hasattr(server, "prepare"):
                server.prepare()

        def start_one(server: Any) -> Any:
            begun = time.monotonic()
            start_on_free_ports(server, lambda: self._log_tail(server.name))
            self.timings[server.name] = round(time.monotonic() - begun, 1)
            return server

        with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            futures = [pool.submit(start_one, s) for s in self.servers]
            errors = []
            for server, future in zip(self.servers, futures, strict=True):
                try:
                    self.started.append(future.result())
                except Exception as exc:
                    errors.append(f"{server.name}: {exc}{self._log_tail(server.name)}")
        if errors:
            self.stop()
            raise RuntimeError("the local stack did not start: " + "; ".join(errors))
        return self.env()

    def _log_tail(self, name: str) -> str:
        log_file = self.workdir / f"{name}.out"
        if not log_file.exists():
            return ""
        lines = log_file.read_text(errors="replace").splitlines()[-15:]
        return "\n  last lines of its log:\n    " + "\n    ".join(lines)

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for server in self.started:
            merged.update(server.env())
        return merged

    def versions(self) -> dict[str, str]:
        return {s.name: s.version() for s in self.started}

    def server(self, name: str) -> Any:
        return next(s for s in self.started if s.name == name)

    def stop(self) -> None:
        for server in reversed(self.started):
            with contextlib.suppress(Exception):
                server.stop()
        self.started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
