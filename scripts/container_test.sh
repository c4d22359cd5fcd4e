#!/usr/bin/env bash
# Build the Dockerfile's cpu image and run it as its own user, with podman: /ready, a transcription
# through the OpenAI SDK, a ledger row, the image's health check, then a new container on the same
# volumes that keeps the keys and the ledger. Exits 0 with a message when podman cannot run here.
#
# No image registry is needed: the base is Debian bookworm from debootstrap (cached as
# localhost/debian:bookworm), and the layers are cached by podman between runs.
# Environment: PYTHON (with the openai package; default .venv/bin/python), DEBIAN_MIRROR,
# STT_TEST_IMAGE (tag to build), TORCH_INDEX_URL (build arg; default: empty when /opt/wheels
# holds a CPU torch wheel, else PyTorch's CPU index).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${STT_TEST_IMAGE:-localhost/openai-stt:cpu-test}
BASE_IMAGE=localhost/debian:bookworm
PYTHON=${PYTHON:-.venv/bin/python}
NAME=stt-container-test-$$
STT_UID=10001
# Lower the limits podman would raise: some hosts refuse them (`--ulimit` on build and run alike).
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

say() { printf '== %s\n' "$*"; }
fail() {
  printf 'container test FAILED: %s\n' "$*" >&2
  exit 1
}
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

# --- podman ----------------------------------------------------------------------------------
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
podman image exists "$BASE_IMAGE" 2>/dev/null || command -v debootstrap >/dev/null || need+=(debootstrap)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
if ((${#need[@]})) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v podman >/dev/null || ! podman info >/dev/null 2>&1; then
  echo "container test SKIPPED: podman cannot run on this machine (podman info failed or podman is missing)"
  exit 0
fi
# crun refuses hybrid cgroup hosts; runc works on them and elsewhere.
PODMAN=(podman)
command -v runc >/dev/null && PODMAN+=(--runtime runc)
"$PYTHON" -c 'import openai' 2>/dev/null || fail "$PYTHON cannot import openai (run scripts/install.sh --test)"
command -v espeak-ng >/dev/null || fail "espeak-ng is missing"

WORK=$(mktemp -d /tmp/stt-container-test.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
show_logs() {
  echo "--- container log" >&2
  "${PODMAN[@]}" logs "$NAME" 2>&1 | tail -n 60 >&2 || true
  echo "--- podman's own messages" >&2
  tail -n 20 "$WORK/podman.err" >&2 || true
}
# podman logs an error for each health-check timer it cannot hand to systemd (none on CI hosts); keep
# its stderr in a file that a failure shows.
quiet() { "${PODMAN[@]}" "$@" 2>>"$WORK/podman.err"; }

# --- base image --------------------------------------------------------------------------------
started=$(now)
if ! podman image exists "$BASE_IMAGE"; then
  mirror=${DEBIAN_MIRROR:-}
  if [[ -z $mirror ]]; then
    # The mirror apt already uses here, from either sources format; else Debian's CDN.
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
  fi
  say "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
  tar -C "$WORK/rootfs" -c . | podman import -q - "$BASE_IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
  say "base image $BASE_IMAGE: $(since "$started")"
fi

# --- build -------------------------------------------------------------------------------------
build_args=(--build-arg "PYTHON_IMAGE=$BASE_IMAGE")
if [[ -z ${TORCH_INDEX_URL+set} ]] && compgen -G '/opt/wheels/torch-*+cpu-*.whl' >/dev/null; then
  TORCH_INDEX_URL=""  # the CPU torch wheel is on this disk, PyTorch's index may be unreachable
fi
[[ -z ${TORCH_INDEX_URL+set} ]] || build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
# Local wheels (the CPU torch here): mounted for the build only; the image keeps just the empty
# mount point /opt/wheels.
if [[ -d /opt/wheels ]]; then
  build_args+=(-v /opt/wheels:/opt/wheels:ro --build-arg PIP_FIND_LINKS=/opt/wheels)
fi
# This host's CA bundle (TLS to the package index may be intercepted here), as a build secret: it
# is never written to a layer.
host_ca=/etc/ssl/certs/ca-certificates.crt
if [[ -f $host_ca ]]; then
  build_args+=(--secret "id=pip_cert,src=$host_ca" --build-arg PIP_CERT=/run/secrets/pip_cert)
fi
say "building $IMAGE (--target cpu)"
started=$(now)
# Docker format: the OCI format has no HEALTHCHECK.
"${PODMAN[@]}" build "${LIMITS[@]}" --format docker --target cpu "${build_args[@]}" -t "$IMAGE" . \
  >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log" >&2; fail "image build"; }
t_build=$(since "$started")
say "build: $t_build"

# The image as built: its health check kept (podman drops it from OCI images), its code root's
# and not writable by the server's user, and no source tree left next to it.
[[ $(podman image inspect --format '{{.Config.Healthcheck}}' "$IMAGE") == *health* ]] ||
  fail "the image has no HEALTHCHECK"
writable=$(quiet run --rm "${LIMITS[@]}" --entrypoint find "$IMAGE" /opt/stt -writable -print -quit)
[[ -z $writable ]] || fail "uid $STT_UID can write to the install tree: $writable"
quiet run --rm "${LIMITS[@]}" --entrypoint test "$IMAGE" ! -e /src || fail "/src is left in the image"

# --- run ---------------------------------------------------------------------------------------
mkdir -p "$WORK/keys" "$WORK/data" "$WORK/models"
chown "$STT_UID:$STT_UID" "$WORK/keys" "$WORK/data" "$WORK/models"
espeak-ng -v en-us -w "$WORK/speech.wav" "The quick brown fox jumps over the lazy dog." ||
  fail "espeak-ng"

run_container() {
  # As the image's own user, on a read-only root filesystem: only the volumes and /tmp are writable.
  # --health-interval=disable: no timer; the check is run by hand below.
  quiet run -d --name "$NAME" "${LIMITS[@]}" --read-only --health-interval=disable -p 127.0.0.1::8000 \
    -v "$WORK/keys:/etc/stt/keys" -v "$WORK/data:/var/lib/stt" -v "$WORK/models:/var/lib/stt/models" \
    "$IMAGE" >/dev/null || { show_logs; fail "podman run"; }
  PORT=$("${PODMAN[@]}" port "$NAME" 8000/tcp | head -n 1 | sed 's/.*://')
  URL=http://127.0.0.1:$PORT
}

wait_ready() {
  local deadline=$((SECONDS + 300))
  until "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/ready", timeout=3)' \
    "$URL" 2>/dev/null; do
    [[ $("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$NAME") == true ]] ||
      { show_logs; fail "the container stopped before it was ready"; }
    ((SECONDS < deadline)) || { show_logs; fail "the server was not ready within 300 s"; }
    sleep 0.5
  done
}

transcribe() {  # KEY: one transcription through the OpenAI SDK
  "$PYTHON" - "$URL/v1" "$1" "$WORK/speech.wav" <<'PY' || { show_logs; fail "transcription"; }
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=120)
text = client.audio.transcriptions.create(model="whisper-1", file=open(sys.argv[3], "rb")).text
print(f"   transcript: {text!r}")
assert "fox" in text.lower(), text
PY
}

in_container() { "${PODMAN[@]}" exec "$NAME" "$@"; }

ledger_rows() {  # requests of key $1 in the ledger, read in the container as the server's user
  in_container python -c "import sqlite3, sys; print(sqlite3.connect('/var/lib/stt/usage.db').execute(
    'SELECT count(*) FROM usage_events WHERE key_name = ?', (sys.argv[1],)).fetchone()[0])" "$1"
}

say "first start"
started=$(now)
run_container
wait_ready
t_ready=$(since "$started")
say "start to ready: $t_ready"

[[ $(in_container id -u) == "$STT_UID" ]] || fail "the server does not run as uid $STT_UID"
default_key=$("${PODMAN[@]}" logs "$NAME" 2>&1 | sed -n 's/^ *\(sk-[^ ]*\) *$/\1/p' | head -n 1)
[[ -n $default_key ]] || { show_logs; fail "the first start printed no key"; }
[[ -f $WORK/keys/keys.json ]] || fail "no keys.json in the keys volume"
ci_key=$(in_container python -m app keys create ci 2>/dev/null) || fail "python -m app keys create"
[[ -f $WORK/data/usage.db ]] || fail "no usage.db in the data volume"
[[ -n $(ls -A "$WORK/models") ]] || fail "nothing in the model volume"

started=$(now)
transcribe "$ci_key"
t_transcribe=$(since "$started")
say "transcription: $t_transcribe"
rows=$(ledger_rows ci)
[[ $rows == 1 ]] || fail "expected 1 ledger row for key ci, found $rows"

say "health check"
quiet healthcheck run "$NAME" || { show_logs; fail "the image's HEALTHCHECK failed"; }

say "new container on the same volumes"
started=$(now)
quiet stop -t 30 "$NAME" >/dev/null
quiet rm "$NAME" >/dev/null
run_container
wait_ready
t_restart=$(since "$started")
say "restart to ready: $t_restart"
if "${PODMAN[@]}" logs "$NAME" 2>&1 | grep -q 'No API key existed'; then
  fail "the keys did not survive: a new key was created"
fi
rows=$(ledger_rows ci)
[[ $rows == 1 ]] || fail "the ledger did not survive: $rows rows for key ci"
transcribe "$default_key"
transcribe "$ci_key"
rows=$(ledger_rows ci)
[[ $rows == 2 ]] || fail "expected 2 ledger rows for key ci, found $rows"
quiet healthcheck run "$NAME" || { show_logs; fail "the image's HEALTHCHECK failed after restart"; }

printf 'container test passed: build %s, start to ready %s, transcription %s, restart to ready %s\n' \
  "$t_build" "$t_ready" "$t_transcribe" "$t_restart"
