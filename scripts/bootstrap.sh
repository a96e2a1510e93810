#!/usr/bin/env bash
# Installs what `make run` and `make test` need and is missing: Debian packages
# (PostgreSQL, Redis, Maven, Java 17), a Python 3.11 virtualenv with the project,
# and the stack's Java servers from Maven Central (cached outside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

need_apt=()
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v mvn >/dev/null || need_apt+=(maven)
[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ] || need_apt+=(openjdk-17-jdk-headless)
command -v setpriv >/dev/null || need_apt+=(util-linux)
# promtool checks and unit-tests the alert rules and the dashboard's queries; the
# Prometheus server scrapes a worker in an integration test
command -v promtool >/dev/null || need_apt+=(prometheus)
# the local stack's API gateway (make run GATEWAY=1, tests/integration/test_gateway.py)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# the /docs page's test renders it in headless Chromium (with fonts for its screenshot)
command -v chromium >/dev/null || need_apt+=(chromium fonts-liberation)
# the AsyncAPI document is validated with the AsyncAPI project's parser (an npm package)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# make bench: wrk drives the HTTP load (BENCH=1)
[ -z "${BENCH:-}" ] || command -v wrk >/dev/null || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
extras=dev
[ -z "${BENCH:-}" ] || extras=dev,bench
stamp="$VENV/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing the project into $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi

asyncapi=tools/asyncapi
if [ ! -f "$asyncapi/node_modules/.installed" ] || [ "$asyncapi/package-lock.json" -nt "$asyncapi/node_modules/.installed" ]; then
  echo "bootstrap: installing the AsyncAPI parser into $asyncapi/node_modules"
  (cd "$asyncapi" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
fi

"$VENV/bin/python" -m devstack fetch
