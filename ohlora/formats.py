"""YAML files read and written by ohlora: `read_yaml`, the one reader of a YAML mapping (settings
files, persona cards, the sidecar files saved beside an adapter) with one-line errors, and the
save/load of a small frozen dataclass of format settings (the writer's and the summarizer's)."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import yaml

from ohlora.errors import OhloraError


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where it is."""
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if not problem:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def read_yaml(path: Path, what: str = "", *, missing: str | None = None, missing_ok: bool = False,
              invalid: str | None = None) -> dict:
    """The mapping in the YAML file at `path`; {} for an empty file, and for a missing one with `missing_ok`.

    Every problem is a one-line OhloraError naming the file as "<what> <path>":
    - missing: "<what> <path> not found", or "<path> is missing: <missing>" when `missing` is given;
    - unreadable: "cannot read <what> <path>: <reason>";
    - not YAML: "<what> <path> is not valid YAML: <problem>";
    - an impossible date (YAML builds dates itself): "<what> <path>: not a real date, expected YYYY-MM-DD (...)";
    - not a mapping: "<what> <path> must hold a mapping".
    `invalid` (e.g. "not a valid recall policy") turns the last three into "<path>: <invalid> (<problem>)",
    for a file that is taken whole or not at all.
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)

    def bad(problem: str, plain: str) -> OhloraError:
        return OhloraError(f"{path}: {invalid} ({problem})" if invalid else plain)

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        if missing_ok:
            return {}
        raise OhloraError(f"{path} is missing: {missing}" if missing else f"{name} not found") from e
    except OSError as e:
        raise OhloraError(f"cannot read {name}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = yaml_problem(e)
        raise bad(f"not valid YAML: {problem}", f"{name} is not valid YAML: {problem}") from e
    except ValueError as e:  # e.g. 2003-13-40, which YAML reads as a date
        raise bad(f"not a real date: {e}", f"{name}: not a real date, expected YYYY-MM-DD ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad("not a mapping", f"{name} must hold a mapping")
    return data


def save_format(obj, path: Path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(asdict(obj), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load_format(cls, path: Path, what: str):
    """`cls(**fields)` from the YAML at `path`; `what` names the adapter in the errors."""
    data = read_yaml(path, f"{what} format", missing=f"a {what} adapter must carry its format")
    known = {f.name for f in fields(cls)}
    if set(data) - known:
        raise OhloraError(f"{path}: expected the fields {sorted(known)}")
    return cls(**data)
