#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
scripts/lint_deploy.sh
.venv/bin/python -m pytest "$@"
