"""The package's layering, read off its imports (module level and inside functions alike).

Dependencies point down only (README "Layout"): a test walks every `import` and fails on an
upward import, on a cycle, or on a function-level import that is not the lazy loading of a heavy
library. Chat-time code never imports training, evaluation or bench; training may import
evaluation, never the reverse; decoding never imports export.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import ohlora

ROOT = Path(ohlora.__file__).parent

# Chat-time layers, lowest first: a module may import its own layer and the ones below.
LAYERS = [
    ("base", ("errors", "paths", "formats", "settings", "models")),
    ("text", ("loop_guard", "parsing", "prompt", "persona", "timecheck", "grounding")),
    ("state", ("store",)),
    ("decoding", ("decoding",)),
    ("memory", ("memory",)),
    ("safety", ("safety",)),
    ("expression", ("expression",)),
    ("export", ("export",)),
    ("config", ("config",)),
    ("turn", ("chat",)),
    ("assembly", ("runtime",)),
    ("front", ("terminal", "server", "cli", "__main__")),
]
OFFLINE = {"datasets", "training", "evaluation", "bench"}
# What each offline room may import besides every chat-time layer.
OFFLINE_MAY = {"datasets": set(), "evaluation": {"datasets"}, "training": {"datasets", "evaluation"},
               "bench": {"datasets", "evaluation", "training"}}
# Only the command line dispatches to the offline rooms; the server never does.
HEAVY = {"torch", "transformers", "peft", "trl", "datasets", "accelerate", "matplotlib", "llama_cpp", "fastapi",
         "uvicorn", "starlette", "gguf", "safetensors", "sentencepiece", "tokenizers", "huggingface_hub",
         "unsloth"}
"""Third-party libraries slow enough to import (seconds, or an optional extra) that a module may
import them, or an ohlora module that loads them, inside the function that needs them."""
LAZY_COMMENT = "# lazy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """ohlora.decoding.fast -> decoding; ohlora.chat -> chat."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> int | str:
    r = room(module)
    if r in OFFLINE:
        return r
    for i, (_, rooms) in enumerate(LAYERS):
        if r in rooms:
            return i
    raise AssertionError(f"{module}: in no layer; add its room to LAYERS in tests/test_layers.py")


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


class Imports(ast.NodeVisitor):
    """Every import of a module: (target, lineno, at module level?)."""

    def __init__(self, module: str, is_package: bool):
        self.module, self.is_package = module, is_package
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0

    def visit_If(self, node):
        if not _type_checking(node):
            self.generic_visit(node)

    def _scoped(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _scoped

    def visit_Import(self, node):
        for a in node.names:
            self.found.append((a.name, node.lineno, self.depth == 0))

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:
            pkg = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            pkg = pkg[:len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        for a in node.names:
            self.found.append((f"{base}.{a.name}" if base.startswith("ohlora") else base, node.lineno, self.depth == 0))


def scan():
    """{module: [(internal target or third-party top name, lineno, top level?)]}, and the sources."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    imports, sources = {}, {}
    for mod, path in files.items():
        text = path.read_text(encoding="utf-8")
        sources[mod] = text.splitlines()
        v = Imports(mod, path.name == "__init__.py")
        v.visit(ast.parse(text))
        out = []
        for target, line, top in v.found:
            if target.startswith("ohlora"):
                name = target
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    out.append((name, line, top))
            else:
                out.append((target.split(".")[0], line, top))
        imports[mod] = out
    return files, imports, sources


FILES, IMPORTS, SOURCES = scan()


def internal_edges(top_only: bool = False):
    edges = defaultdict(set)
    for mod, found in IMPORTS.items():
        for target, _, top in found:
            if target.startswith("ohlora") and (top or not top_only):
                edges[mod].add(target)
    return edges


def heavy_modules() -> set[str]:
    """ohlora modules whose import (module-level imports, followed through the package) loads a
    heavy library."""
    top = internal_edges(top_only=True)
    direct = {m for m, found in IMPORTS.items() if any(t in HEAVY and is_top for t, _, is_top in found)}
    heavy, changed = set(direct), True
    while changed:
        changed = False
        for m in FILES:
            if m not in heavy and top[m] & heavy:
                heavy.add(m)
                changed = True
    return heavy


def allowed(importer: str, target: str) -> bool:
    a, b = layer_of(importer), layer_of(target)
    ra, rb = room(importer), room(target)
    if ra == rb:
        return True
    if ra == "cli" or importer == "ohlora.__main__":
        return True  # the command line dispatches to every room
    if isinstance(b, str):  # an offline room
        return isinstance(a, str) and b in OFFLINE_MAY[a]
    if isinstance(a, str):
        return True  # offline code uses every chat-time layer
    return b <= a and rb not in ("cli", "server", "terminal")


def test_every_module_has_a_layer():
    for mod in FILES:
        if mod != "ohlora":
            layer_of(mod)


def test_no_upward_imports():
    bad = [f"{mod}:{line} imports {target}" for mod, found in IMPORTS.items() for target, line, _ in found
           if target.startswith("ohlora") and target != "ohlora" and mod != "ohlora" and not allowed(mod, target)]
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def find_cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges = {m: {t for t in ts if t != "ohlora"} for m, ts in internal_edges().items()}
    assert find_cycles(edges) == []


def test_function_level_imports_only_load_heavy_libraries_lazily():
    heavy = heavy_modules()
    bad, uncommented = [], []
    for mod, found in IMPORTS.items():
        lines = SOURCES[mod]
        for target, line, top in found:
            if top:
                continue
            if target not in HEAVY and target not in heavy:
                bad.append(f"{mod}:{line} imports {target} inside a function (light: import it at the top)")
                continue
            # the comment sits on the import, or above the block of imports it opens
            i = line - 1  # 0-based index of the import's line
            while i > 0 and (lines[i - 1].strip().startswith(("import ", "from ", ")")) or not lines[i - 1].strip()
                             or lines[i - 1].startswith(" " * 8) and lines[i - 1].rstrip().endswith(",")):
                i -= 1
            if not any(LAZY_COMMENT in lines[j] for j in range(max(0, i - 1), line)):
                uncommented.append(f"{mod}:{line} ({target})")
    assert not bad, "\n".join(sorted(bad))
    assert not uncommented, f"lazy imports without a '{LAZY_COMMENT}' comment:\n" + "\n".join(sorted(uncommented))


@pytest.mark.parametrize("importer,target,ok", [
    ("ohlora.decoding.llamacpp", "ohlora.export.gguf", False),
    ("ohlora.memory.loading", "ohlora.training.memory", False),
    ("ohlora.evaluation.summary", "ohlora.training.summary", False),
    ("ohlora.training.writer", "ohlora.evaluation.writer", True),
    ("ohlora.store.memories", "ohlora.memory.encoder", False),
    ("ohlora.server.app", "ohlora.runtime", True),
    ("ohlora.runtime", "ohlora.server.app", False),
    ("ohlora.chat", "ohlora.bench.chat", False),
    ("ohlora.cli.train", "ohlora.training.llm", True),
])
def test_the_rule_itself(importer, target, ok):
    """The check can fail: known upward imports are refused, known downward ones allowed."""
    assert allowed(importer, target) is ok


def test_a_cycle_is_found():
    assert find_cycles({"ohlora.a": {"ohlora.b"}, "ohlora.b": {"ohlora.a"}}) == [["ohlora.a", "ohlora.b"]]
