#!/usr/bin/env bash
# Install (if needed) and start the server on the embedded default model. Extra args go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/python -m app serve "$@"
