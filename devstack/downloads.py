"""Fetch the Java servers of the local stack from Maven Central, once, into a cache folder.

The cache lives outside the repository: `$CMS_CACHE_DIR`, else `/var/cache/course-management`
when running as root (Elasticsearch runs as an unprivileged user and must read it), else
`~/.cache/course-management`. Maven keeps its own copy in `~/.m2` too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

KAFKA_VERSION = "4.1.1"
APICURIO_VERSION = "3.3.3"
ELASTICSEARCH_VERSION = "8.19.21"


def _find_java(env: str, candidates: list[str]) -> str:
    """A JDK home: `$env` when set, else the first candidate that has bin/java."""
    configured = os.environ.get(env)
    if configured:
        return configured
    for pattern in candidates:
        for home in sorted(Path("/usr/lib/jvm").glob(pattern)):
            if (home / "bin" / "java").exists():
                return str(home)
    return str(Path("/usr/lib/jvm") / candidates[0])


# Kafka 4 and Elasticsearch 8 run on Java 17; Apicurio Registry 3 needs Java 21 or newer.
JAVA_17 = _find_java("CMS_JAVA17_HOME", ["java-17-openjdk-amd64", "java-17-openjdk*"])
JAVA_21_PLUS = _find_java(
    "CMS_JAVA21_HOME",
    ["temurin-25-jdk-amd64", "temurin-2[1-9]-jdk*", "java-2[1-9]-openjdk*", "java-25-openjdk*"],
)

_POM = Path(__file__).resolve().parents[1] / "config" / "stack" / "kafka-pom.xml"


def cache_dir() -> Path:
    configured = os.environ.get("CMS_CACHE_DIR")
    if configured:
        path = Path(configured)
    elif os.geteuid() == 0:
        path = Path("/var/cache/course-management")
    else:
        path = Path.home() / ".cache" / "course-management"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mvn(*args: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            "Maven (mvn) is needed to fetch the stack's servers: apt-get install maven"
        )
    subprocess.run([mvn, "-q", "-B", *args], check=True)


def kafka_libs() -> Path:
    target = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = target / ".complete"
    if not marker.exists():
        _mvn(
            "-f",
            str(_POM),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target}",
            "-DincludeScope=runtime",
        )
        marker.touch()
    return target


def _maven_artifact(coordinates: str, filename: str) -> Path:
    downloads = cache_dir() / "downloads"
    archive = downloads / filename
    if not archive.exists():
        _mvn("dependency:copy", f"-Dartifact={coordinates}", f"-DoutputDirectory={downloads}")
    return archive


def apicurio_home() -> Path:
    home = cache_dir() / f"apicurio-{APICURIO_VERSION}"
    if not (home / "quarkus-run.jar").exists():
        archive = _maven_artifact(
            f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
            f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz",
        )
        tmp = home.with_suffix(".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(home)
    return home


def elasticsearch_home() -> Path:
    home = cache_dir() / f"elasticsearch-{ELASTICSEARCH_VERSION}"
    if not (home / "bin" / "elasticsearch").exists():
        archive = _maven_artifact(
            f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ELASTICSEARCH_VERSION}:zip",
            f"elasticsearch-{ELASTICSEARCH_VERSION}.zip",
        )
        tmp = cache_dir() / "elasticsearch.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp)  # noqa: S202 - our pinned Maven Central artifact
        (tmp / f"elasticsearch-{ELASTICSEARCH_VERSION}").rename(home)
        shutil.rmtree(tmp, ignore_errors=True)
        for path in (home / "bin").iterdir():
            path.chmod(0o755)
        for root, dirs, files in os.walk(home):
            for name in dirs + files:
                p = Path(root) / name
                p.chmod(p.stat().st_mode | 0o044 | (0o011 if p.is_dir() else 0))
    return home


# The local S3: Versity S3 Gateway (Apache-2.0), built from the Go module proxy. It checks
# SigV4 signatures, presigned URLs' expiry and what they signed; moto checked none of it.
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "v1.8.0"


def versitygw_binary() -> Path:
    return _go_binary(VERSITYGW_MODULE, VERSITYGW_VERSION, "versitygw")


# kustomize builds the manifests that CI validates (tests/unit/test_manifests.py).
# v5.8.2: @latest wants a newer Go than this machine kind has.
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.8.2"


def kustomize_binary() -> Path:
    return _go_binary(KUSTOMIZE_MODULE, KUSTOMIZE_VERSION, "kustomize")


def _go_binary(module: str, version: str, name: str) -> Path:
    """`go install module@version` into the cache (once), from the Go module proxy."""
    home = cache_dir() / f"{name}-{version}"
    binary = home / name
    if not binary.exists():
        go = shutil.which("go") or "/usr/local/go/bin/go"
        tmp = home.with_suffix(".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(
            [go, "install", f"{module}@{version}"],
            env={**os.environ, "GOBIN": str(tmp), "CGO_ENABLED": "0"},
            check=True,
        )
        shutil.rmtree(home, ignore_errors=True)
        tmp.rename(home)
    return binary


def fetch_all() -> None:
    kafka_libs()
    apicurio_home()
    elasticsearch_home()
    versitygw_binary()
    kustomize_binary()
