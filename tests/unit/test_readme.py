"""The README's settings table is the one generated from the settings classes."""

from __future__ import annotations

from app.settings import PROJECT_ROOT
from app.settings_doc import BEGIN, END, settings_table


def test_readme_settings_table_is_current() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip()
    assert block == settings_table(), "regenerate with: python -m app.settings_doc"
