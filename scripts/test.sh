#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests that run the real
# binary against a throwaway PostgreSQL cluster (started by the tests), SQLite
# files, a moto S3 server (started by the tests) and DuckDB.
#
# Needs: Rust, the PostgreSQL server binaries (apt-get install postgresql) and
# python3. DuckDB and moto are installed here, once, into ./.venv.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import duckdb, moto, boto3, flask' >/dev/null 2>&1 || [ ! -x .venv/bin/moto_server ]; then
  echo "installing duckdb and moto[server] into .venv" >&2
  .venv/bin/pip install --quiet --disable-pip-version-check duckdb 'moto[server]' boto3
fi
export ACCOUNT_USAGE_PYTHON="$PWD/.venv/bin/python"
export PATH="$PWD/.venv/bin:$PATH"

cargo test --locked "$@"
