#!/usr/bin/env bash
# The system packages the test suite needs, installed with apt-get when any
# is missing: the PostgreSQL server binaries (the tests' throwaway clusters),
# the Pushgateway (the metrics test pushes to a real one), promtool (the alert
# rules are checked and unit-tested), Debian's chromium (the report page's
# browser test), Node.js with npm (playwright-core) and python3's venv
# (DuckDB, moto and the validators). Run by scripts/test.sh before anything
# else, so the README's test command works on a fresh machine with Rust.
#
# As root it installs with apt-get, as another user with `sudo -n apt-get`
# when sudo needs no password; otherwise it names the packages and exits 1.
# It installs nothing when everything is there.
set -euo pipefail

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql postgresql-client)
fi
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=(none)
  fi
  if [ "${as_root[*]}" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/system-deps.sh: the tests need ${missing[*]}: install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing ${missing[*]} with apt-get" >&2
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PostgreSQL refuses to run as root, so as root the harness starts its
# clusters as this user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres
fi
