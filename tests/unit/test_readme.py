"""The README's settings table is the one generated from the settings classes."""

from __future__ import annotations

from app.settings import PROJECT_ROOT
from app.settings_doc import BEGIN, END, settings_table


def test_readme_settings_table_is_current() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip()
    assert block == settings_table(), "regenerate with: python -m app.settings_doc"


def _layout_section() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    start = readme.index("- Layout (each layer imports only the ones below it):")
    return readme[start : readme.index("- Writable state", start)]


def test_the_layout_names_every_engine_module_and_family() -> None:
    layout = _layout_section()
    engines = PROJECT_ROOT / "engines"
    names = [p.name for p in engines.glob("*.py") if p.name != "__init__.py"]
    names += [f"{p.name}/" for p in engines.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    missing = [name for name in names if f"`{name}" not in layout]
    assert not missing, f"README's layout section does not name engines/{missing}"
    for package in ("app/serving/realtime", "app/api/realtime"):
        modules = [p.name for p in (PROJECT_ROOT / package).glob("*.py") if p.name != "__init__.py"]
        unnamed = [m for m in modules if m.removesuffix(".py") not in layout]
        assert len(unnamed) <= len(modules) // 2, f"{package}: the layout names too few of {modules}"


def test_adding_a_family_is_what_the_readme_says() -> None:
    from typing import get_args

    from app.settings import ModelConfig
    from engines.families import FAMILIES

    engine_choices = set(get_args(ModelConfig.model_fields["engine"].annotation))
    assert engine_choices == set(FAMILIES), "ModelConfig.engine and engines.families.FAMILIES disagree"
    for kind, module in FAMILIES.items():
        assert module == f"engines.{kind}.family" and (PROJECT_ROOT / "engines" / kind / "family.py").is_file()
