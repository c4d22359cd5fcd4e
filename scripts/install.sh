#!/usr/bin/env bash
# Create .venv and install the server (and, with --test, the test tools and system packages).
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

need_system=()
if [[ $WITH_TEST == 1 ]]; then
  # Tests generate speech and convert containers; the server itself decodes through PyAV.
  for tool in ffmpeg espeak-ng sox; do command -v "$tool" >/dev/null || need_system+=("$tool"); done
fi
if ((${#need_system[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need_system[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_system[@]}" >/dev/null
  else
    echo "missing system packages: ${need_system[*]} (install them, e.g. sudo apt-get install ${need_system[*]})" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
extras=""
[[ $WITH_TEST == 1 ]] && extras="[test]"
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras}"
