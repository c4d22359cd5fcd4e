"""The layers import only what lies below them: checked in fresh interpreters, so nothing is cached,
and in the source, so an import inside a function counts too."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT
from engines.families import FAMILIES

HTTP = {"fastapi", "starlette", "sse_starlette", "app.api"}

# The packages of the engine families (engines/whisper, engines/moonshine), as registered.
FAMILY_PACKAGES = sorted({module.rsplit(".", 1)[0] for module in FAMILIES.values()})
FAMILY_MODULE_NAME = re.compile(r"^(" + "|".join(re.escape(p) for p in FAMILY_PACKAGES) + r")(\.\w+)*$")
REGISTRY = PROJECT_ROOT / "engines" / "families.py"  # names the families' modules, loads them lazily


def _is_family_module(name: str) -> bool:
    return FAMILY_MODULE_NAME.match(name) is not None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources(*packages: str) -> list[Path]:
    """Every .py file of ``packages`` outside the engine families (and no ``__main__``, which runs the CLI)."""
    found = []
    for package in packages:
        for path in sorted((PROJECT_ROOT / package.replace(".", "/")).rglob("*.py")):
            name = _module_name(path)
            if path.stem != "__main__" and not _is_family_module(name):
                found.append(path)
    return found


def _modules(*packages: str) -> list[str]:
    return [_module_name(path) for path in _sources(*packages)]


def _imports(*modules: str) -> set[str]:
    """The modules loaded by importing ``modules`` in a fresh interpreter: full names and their top-level packages."""
    code = (
        f"import importlib, sys\nfor m in {list(modules)!r}: importlib.import_module(m)\nprint('\\n'.join(sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = set(result.stdout.split())
    return {name.split(".")[0] for name in names} | names


def test_the_families_are_where_the_checks_look() -> None:
    assert {"engines.moonshine", "engines.whisper"} <= set(FAMILY_PACKAGES)
    for package in FAMILY_PACKAGES:
        assert (PROJECT_ROOT / package.replace(".", "/") / "__init__.py").is_file(), package
    assert "engines.manager" in _modules("engines") and "engines.live.turns" in _modules("engines")
    assert not [m for m in _modules("engines", "app") if _is_family_module(m)]


@pytest.mark.parametrize("module", ["app.serving.service", "app.serving.factory", "app.accounting.ledger_hooks"])
def test_serving_and_accounting_know_no_http(module: str) -> None:
    loaded = _imports(module)
    assert not loaded & HTTP, module


def test_jobs_know_no_http() -> None:
    modules = _modules("app.jobs")
    assert "app.jobs.runner" in modules and "app.jobs.system" in modules
    assert not _imports(*modules) & HTTP


def test_realtime_sessions_know_no_http() -> None:
    modules = _modules("app.serving.realtime")
    assert "app.serving.realtime.session" in modules
    assert not _imports(*modules) & HTTP


def test_engines_know_nothing_of_the_app() -> None:
    loaded = _imports("engines.longform", "engines.manager", "engines.diarized", *_modules("engines.live"))
    assert not loaded & {"app", "fastapi", "starlette", "sse_starlette"}


def test_every_engine_neutral_module_knows_nothing_of_the_app() -> None:
    loaded = _imports(*_modules("engines"))
    assert not loaded & {"app", "fastapi", "starlette", "sse_starlette"}


def test_importing_engine_neutral_modules_loads_no_family() -> None:
    """The service, the realtime sessions and the neutral engine code reach a family only through
    engines.families' lazy loader, when a model of that family is loaded."""
    loaded = _imports(*_modules("engines", "app"))
    assert "engines.families" in loaded and "app.main" in loaded  # it did import them
    assert not {name for name in loaded if _is_family_module(name)}


def _package_of(path: Path) -> list[str]:
    """The package a relative import in ``path`` starts from."""
    name = _module_name(path).split(".")
    return name if path.stem == "__init__" else name[:-1]


def _imported_names(source: str, package: list[str]) -> list[tuple[int, str]]:
    """(line, module) for every import in ``source``: relative ones resolved, ``from p import m`` also as ``p.m``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _family_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) for every string constant that is a family's module name (an importlib target)."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_family_module(node.value)
    ]


def test_no_engine_neutral_module_imports_a_family() -> None:
    """Only engines/families.py names the families' modules (as strings, imported lazily); nothing imports them."""
    sources = _sources("engines", "app")
    assert REGISTRY in sources
    offenders = []
    for path in sources:
        where, source = path.relative_to(PROJECT_ROOT), path.read_text()
        offenders += [
            f"{where}:{line} imports {name}"
            for line, name in _imported_names(source, _package_of(path))
            if _is_family_module(name)
        ]
        if path != REGISTRY:
            offenders += [f"{where}:{line} names {text!r}" for line, text in _family_strings(source)]
    assert not offenders, "\n".join(offenders)
    assert _family_strings(REGISTRY.read_text())  # the registry is where the names are


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("import engines.whisper.engine", "engines.whisper.engine"),
        ("from engines.moonshine import engine", "engines.moonshine"),
        ("from engines import whisper", "engines.whisper"),
        ("def f():\n    from ..whisper.family import FAMILY", "engines.whisper.family"),
        ("from . import moonshine", "engines.moonshine"),
    ],
)
def test_the_static_check_sees_each_spelling(statement: str, expected: str) -> None:
    package = ["engines", "live"] if ".." in statement else ["engines"]
    names = [name for _, name in _imported_names(statement, package)]
    assert expected in names and _is_family_module(expected)


def test_the_static_check_passes_neutral_imports() -> None:
    source = "from engines.whisper_like import x\nimport engines.spec\nfrom .live import turns\n"
    assert not [n for _, n in _imported_names(source, ["engines"]) if _is_family_module(n)]


def test_loading_settings_needs_no_database_library() -> None:
    assert "sqlalchemy" not in _imports("app.settings")
