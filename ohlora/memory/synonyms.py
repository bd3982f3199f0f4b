"""Synonym groups of memory keys (좋아하는 아이돌 = 좋아하는 가수): keys of one group count as the
same key, for recall's key bank and for the similarity of training pairs."""

from __future__ import annotations

from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.paths import bundled


def load_synonyms(path: Path | None = None) -> dict[str, str]:
    """key -> canonical key (the first of its group)."""
    if path is None:
        path = Path(bundled("memory_synonyms.yaml"))
    data = read_yaml(Path(path), "synonym file")
    groups = data.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise OhloraError(f"synonym file {path} must hold `groups:` as a list of lists of keys")
    return {" ".join(str(k).split()): " ".join(str(g[0]).split()) for g in groups for k in g}
