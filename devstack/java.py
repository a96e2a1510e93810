"""The local stack's Java servers: Kafka (KRaft), Apicurio Registry, Elasticsearch."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mirakuru import HTTPExecutor, TCPExecutor
from mirakuru.base import Executor

from devstack import downloads
from devstack.processes import (
    HOST,
    chown_to,
    ensure_user,
    free_port,
    logs_to,
    unprivileged,
    wait_until,
)

log = logging.getLogger(__name__)

SEARCH_USER = "cmsearch"  # Elasticsearch refuses to run as root


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
            **logs_to(self.workdir / f"{self.name}.out"),
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
            **logs_to(self.workdir / f"{self.name}.out"),
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
        ensure_user(SEARCH_USER)
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
        chown_to(base, SEARCH_USER)
        self.workdir.chmod(0o755)
        command = [*unprivileged(SEARCH_USER), str(home / "bin" / "elasticsearch")]
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
            **logs_to(self.workdir / f"{self.name}.out"),
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
