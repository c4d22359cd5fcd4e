"""Render the settings reference table for the README from the settings classes themselves."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from app.settings import (
    PROJECT_ROOT,
    AliasConfig,
    DiarizationConfig,
    JobsConfig,
    KeyLimitConfig,
    ModelConfig,
    RealtimeConfig,
    Settings,
)

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.default_factory is not None:
        value: object = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "see below"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    text = str(value).replace(str(PROJECT_ROOT) + "/", "./")
    return f"`{text}`"


def _rows(model: type[BaseModel], prefix: str, env: bool) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        env_name = f"`STT_{name.upper()}`" if env else "–"
        rows.append(f"| `{key}` | {env_name} | {_default(model, name)} | {field.description or ''} |")
    return rows


def settings_table() -> str:
    lines = ["| setting (YAML key) | environment | default | meaning |", "|---|---|---|---|"]
    lines += _rows(Settings, "", env=True)
    lines += _rows(ModelConfig, "models.<id>.", env=False)
    lines += _rows(AliasConfig, "aliases.<name>.", env=False)
    lines += _rows(DiarizationConfig, "diarization.", env=False)
    lines += _rows(KeyLimitConfig, "default_limits. / key_limits.<key>.", env=False)
    lines += _rows(RealtimeConfig, "realtime.", env=False)
    lines += _rows(JobsConfig, "jobs.", env=False)
    return "\n".join(lines)


if __name__ == "__main__":
    print(f"{BEGIN}\n{settings_table()}\n{END}")
