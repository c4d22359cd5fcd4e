"""The layers import only what lies below them: checked in fresh interpreters, so nothing is cached."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.settings import PROJECT_ROOT


def _imports(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in result.stdout.split()} | set(result.stdout.split())


@pytest.mark.parametrize("module", ["app.serving.service", "app.serving.factory", "app.accounting.ledger_hooks"])
def test_serving_and_accounting_know_no_http(module: str) -> None:
    loaded = _imports(module)
    assert not loaded & {"fastapi", "starlette", "sse_starlette", "app.api"}, module


def test_engines_know_nothing_of_the_app() -> None:
    loaded = _imports("engines.longform, engines.manager, engines.diarized")
    assert not loaded & {"app", "fastapi", "starlette"}


def test_loading_settings_needs_no_database_library() -> None:
    assert "sqlalchemy" not in _imports("app.settings")
