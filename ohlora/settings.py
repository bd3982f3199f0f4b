"""The one loader of typed settings: a frozen dataclass (its `__post_init__` checks the values) built
from defaults < the preset for its base < a YAML file's section < flags that are not None.

Used for the chat (`chat:`) and every training command (`train_llm:`, `train_memory:`,
`train_writer:`, `train_summary:`)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Callable, Mapping

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml


def read_settings(path: Path | None, section: str, cls) -> dict:
    """The settings for dataclass `cls` in a YAML file: its `section:` mapping, or the top level.
    Unknown names and malformed files are one-line errors. No file: no settings."""
    if path is None:
        return {}
    data = read_yaml(path, "config file")
    data = data.get(section, data)
    if not isinstance(data, dict):
        raise OhloraError(f"config file {path}: `{section}` must hold a mapping of settings")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise OhloraError(f"config file {path}: unknown settings {unknown}; known: {sorted(known)}")
    return data


Presets = Mapping[str, dict] | Callable[[str, dict], dict]
"""Settings per base model name, or a function (base, the YAML's and flags' settings) -> settings."""


def load_config(cls, path: Path | None, section: str, presets: Presets | None = None, *, what: str | None = None,
                **flags):
    """`cls` from its defaults, then (with `presets`) the preset for the chosen base, then the
    file's `section` (or top level), then every flag that is not None.

    A list given for a field whose default is a tuple becomes a tuple. `what` names the config
    in the one-line error for a value of the wrong type (a TypeError); without it that error
    is raised as it is."""
    data = read_settings(path, section, cls)
    flags = {k: v for k, v in flags.items() if v is not None}
    merged = {**data, **flags}
    if presets is not None:
        base = flags.get("base") or data.get("base") or cls.base
        preset = presets(base, merged) if callable(presets) else presets.get(base, {})
        merged = {**preset, **merged, "base": base}
    tuples = {f.name for f in fields(cls) if f.default is not MISSING and isinstance(f.default, tuple)}
    merged = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in merged.items()}
    try:
        return cls(**merged)
    except TypeError as e:
        if what is None:
            raise
        raise OhloraError(f"{what}: {e}") from e
