"""The architecture rules, read from the source with ``ast`` (every import, lazy ones inside functions too).

* Imports point down the layers below; packages of one layer never import each other.
* h5py only in ``store/``; typer and click only in ``cli/``; openvino only in ``engine/openvino.py`` and
  ``engine/export.py``; torch, torchvision and timm only in ``engine/embed.py`` and ``engine/export.py``
  (the PyTorch runtime and the conversion), the builders (and ``backbones/blocks.py``), ``learn/predict.py``
  and ``learn/finetune/``.
* ``learn/classify.py``, ``analysis/transfer.py`` (with its score ``registry.py``) and ``analysis/project.py``
  take arrays: no store, no backbone, no torch.
* No private name (``_x``) is used outside the module that defines it: a helper two modules share is public
  (or lives in the one that uses it). A private module (``_common``) may be imported within its package.
* No cycle between modules, lazy imports included. The graph has one node per module; a package's
  ``__init__`` is the node of the package's name, reached only by what is imported *from* it (``import pkg``,
  ``from pkg import name``): ``from pkg import sub`` and ``import pkg.sub`` of a submodule reach ``pkg.sub``
  alone (the parent ``__init__`` runs first, but the importer uses none of it). ``featx/__init__.py``'s lazy
  names are strings for ``importlib``, so they add no edge; a package's ``__init__`` that imports its own
  submodules (re-exports, registration) is an edge like any other, and a submodule taking a name back
  from it closes a cycle.
"""

from __future__ import annotations

import ast
import shutil
from collections import deque
from pathlib import Path

import pytest

FEATX = Path(__file__).resolve().parents[1] / "featx"

LAYERS = [
    {"featx.env"},  # the environment variables featx reads, read only there
    {"featx.config", "featx.errors", "featx.stats", "featx.faults"},  # leaves: import nothing of featx but env
    {"featx.files"},  # safe writes (temporary name, rename) and disk-full errors: above the leaves, below all else
    {"featx.data", "featx.backbones"},
    {"featx.store", "featx.engine", "featx.report"},
    {"featx.extraction", "featx.learn", "featx.analysis"},  # the stages
    {"featx.look"},  # neighbours, audit, explain: over stores, fit runs and fine-tuned checkpoints
    {"featx.api"},  # the Python API: one function per command, the Store object, ImageEmbedder
    {"featx.jobs", "featx.explore"},  # cluster orchestration (shards, SLURM, `featx run`); the explore web app
    {"featx.cli"},
]
ROOT = "featx"  # __init__ (lazy names, __version__) and __main__

ONLY_IN = {
    "h5py": ("featx/store/",),
    "typer": ("featx/cli/",),
    "click": ("featx/cli/",),
    "starlette": ("featx/explore/server.py",),
    "uvicorn": ("featx/explore/launch.py",),
    "openvino": ("featx/engine/openvino.py", "featx/engine/export.py"),
    **{lib: ("featx/engine/embed.py", "featx/engine/export.py", "featx/backbones/build.py", "featx/backbones/torchvision.py",
             "featx/backbones/timm.py", "featx/backbones/pixels.py", "featx/backbones/tap.py",
             "featx/backbones/describe.py", "featx/backbones/weights.py", "featx/backbones/weights_ref.py", "featx/backbones/blocks.py",
             "featx/learn/predict.py", "featx/learn/finetune/", "featx/look/cam.py", "featx/look/network.py")
       for lib in ("torch", "torchvision", "timm")},
}

ARRAYS_ONLY = {"featx/learn/classify.py", "featx/analysis/transfer.py", "featx/analysis/registry.py",
               "featx/analysis/project.py"}
ARRAYS_MAY_USE = {"featx.errors", "featx.stats", "featx.config", "featx.analysis.transfer",
                  "featx.analysis.registry"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _is_module(name: str, root: Path) -> bool:
    p = root.parent / name.replace(".", "/")
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def _imports_of(node: ast.AST, path: Path, root: Path):
    """(line, imported module, imported names) of one import statement, relative imports resolved."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield node.lineno, alias.name, []
    elif isinstance(node, ast.ImportFrom):
        target = node.module or ""
        if node.level:
            package = _package(_module_name(path, root), path).split(".")
            target = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
        names = [a.name for a in node.names]
        subs = [n for n in names if _is_module(f"{target}.{n}", root)]
        for n in subs:
            yield node.lineno, f"{target}.{n}", []
        if len(subs) < len(names):  # names taken from the module itself, not only its submodules
            yield node.lineno, target, [n for n in names if n not in subs]


def _imports(path: Path, root: Path):
    """Every import in ``path``, lazy ones inside functions too."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        yield from _imports_of(node, path, root)


def _layer(module: str) -> int | None:
    for i, group in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in group):
            return i
    return None


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def check(root: Path = FEATX) -> list[str]:
    """Every violation of the rules in the package at ``root``, one line each."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        here = _module_name(path, root)
        here_layer = _layer(here)
        here_package = _package(here, path)
        for line, target, names in _imports(path, root):
            where = f"{rel}:{line}"
            lib = target.split(".")[0]
            if lib in ONLY_IN and not rel.startswith(ONLY_IN[lib]):
                problems.append(f"{where}: imports {lib}, allowed only in {', '.join(ONLY_IN[lib])}")
            if lib != "featx":
                continue
            there_layer = _layer(target)
            if here_layer is not None and target != ROOT:
                if there_layer is None or there_layer > here_layer:
                    problems.append(f"{where}: {here} imports {target}, which is above it")
                elif there_layer == here_layer and _top(target) != _top(here):
                    problems.append(f"{where}: {here} imports its sibling {target}")
            if rel in ARRAYS_ONLY and target != ROOT and not any(
                    target == m or target.startswith(m + ".") for m in ARRAYS_MAY_USE):
                problems.append(f"{where}: {here} works on arrays but imports {target}")
            private = [n for n in names if _private(n)]
            if private and target != here:
                problems.append(f"{where}: uses private {', '.join(private)} of {target}")
            if any(_private(p) for p in target.split(".")) and not _within(here_package, target):
                problems.append(f"{where}: uses private module {target} outside its package")
        for line, target, name in _private_attributes(path, root):
            if target != here:
                problems.append(f"{rel}:{line}: uses private {name} of {target}")
    return problems + _cycles(root)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _within(package: str, module: str) -> bool:
    """``module``'s private parts all lie inside ``package`` (``featx.cli._common`` from ``featx.cli``)."""
    parts = module.split(".")
    first = next(i for i, p in enumerate(parts) if _private(p))
    return package == ".".join(parts[:first]) or package.startswith(".".join(parts[:first]) + ".")


def import_graph(root: Path = FEATX) -> dict[str, dict[str, str]]:
    """module -> {featx module it imports: where (``file:line`` of the first such import)}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(root.rglob("*.py")):
        here = _module_name(path, root)
        edges = graph.setdefault(here, {})
        for line, target, _ in _imports(path, root):
            if target.split(".")[0] == root.name and target != here and _is_module(target, root):
                edges.setdefault(target, f"{path.relative_to(root.parent).as_posix()}:{line}")
    return graph


def _shortest_path(graph: dict[str, dict[str, str]], start: str, goal: str, within: set[str]) -> list[str] | None:
    before = {start: start}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        if node == goal:
            path = [goal]
            while path[-1] != start:
                path.append(before[path[-1]])
            return path[::-1]
        for nxt in sorted(graph.get(node, {})):
            if nxt in within and nxt not in before:
                before[nxt] = node
                todo.append(nxt)
    return None


def _components(graph: dict[str, dict[str, str]]) -> list[set[str]]:
    """The strongly connected sets of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for top in sorted(graph):
        if top in index:
            continue
        index[top] = low[top] = len(index)
        stack.append(top)
        work = [(top, iter(sorted(graph[top])))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set(stack[stack.index(node):])
                del stack[stack.index(node):]
                if len(members) > 1:
                    found.append(members)
    return found


def _cycles(root: Path) -> list[str]:
    """One line per import cycle: for each import inside a strongly connected set of modules, the shortest
    cycle through it (each cycle once, starting at its first module in sorted order)."""
    graph = import_graph(root)
    cycles = set()
    for members in _components(graph):
        for a in sorted(members):
            for b in sorted(graph[a]):
                back = _shortest_path(graph, b, a, members) if b in members else None
                if back:
                    loop = [a, *back[:-1]]
                    k = loop.index(min(loop))
                    cycles.add(tuple(loop[k:] + loop[:k]))
    return [f"import cycle: {' -> '.join((*c, c[0]))} "
            f"({', '.join(graph[x][y] for x, y in zip(c, (*c[1:], c[0])))})" for c in sorted(cycles)]


def _private_attributes(path: Path, root: Path):
    """(line, module, name) for each ``alias._name`` where ``alias`` is an imported featx module."""
    aliases = {}
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            resolved = {t for _, t, _ in _imports_of(node, path, root)}
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                full = next((t for t in resolved if t.endswith("." + alias.name) or t == alias.name), None)
                if full and full.startswith("featx"):
                    aliases[bound] = full
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and _private(node.attr)):
            yield node.lineno, aliases[node.value.id], node.attr


def test_featx_follows_the_architecture_rules():
    assert check() == []


def _plant(tmp_path: Path, rel: str, line: str) -> Path:
    copy = tmp_path / "featx"
    shutil.copytree(FEATX, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / rel
    target.write_text(target.read_text() + f"\n{line}\n")
    return copy


@pytest.mark.slow
def test_a_planted_upward_import_is_caught(tmp_path):
    before = set(check())  # empty, unless the first test fails too
    problems = [p for p in check(_plant(tmp_path, "store/reader.py", "import featx.cli")) if p not in before]
    assert any("featx/store/reader.py" in p and "imports featx.cli, which is above it" in p for p in problems)
    cycles = [p for p in problems if p.startswith("import cycle")]  # featx.cli imports all: it closes circles
    assert cycles and all("featx.store.reader -> featx.cli" in p for p in cycles)
    assert len(problems) == len(cycles) + 1


@pytest.mark.slow
def test_planted_sibling_library_and_private_imports_are_caught(tmp_path):
    cases = {
        ("learn/fit.py", "from ..analysis import transfer"): "imports its sibling featx.analysis.transfer",
        ("store/schema.py", "import torch"): "imports torch, allowed only in",
        ("report/plots.py", "import h5py"): "imports h5py, allowed only in featx/store/",
        ("learn/classify.py", "from ..store.reader import load_features"): "works on arrays but imports",
        ("analysis/analyze.py", "from ..learn.classify import _estimator"): "uses private _estimator",
        ("analysis/views.py", "from ..report import plots\nplots._save(None, None)"): "uses private _save",
        ("config.py", "from .errors import FeatxError"): "",  # leaves may share a layer: a sibling import
    }
    for (rel, line), expected in cases.items():
        problems = check(_plant(tmp_path / rel.replace("/", "-"), rel, line))
        if expected:
            assert any(expected in p for p in problems), (line, problems)
        else:
            assert any("sibling featx.errors" in p for p in problems), (line, problems)


def _fake(tmp_path: Path, files: dict[str, str]) -> Path:
    """A tiny ``featx`` tree: ``files`` maps paths under it to their text (packages get an ``__init__``)."""
    root = tmp_path / "featx"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root


@pytest.mark.slow
def test_planted_cycles_and_private_imports_are_caught(tmp_path):
    root = _fake(tmp_path, {
        "data/a.py": "def lazy():\n    from .b import g\n",  # a function-level import counts
        "data/b.py": "from .c import h\n",
        "data/c.py": "from . import a\n",
        "data/d.py": "from .a import _helper\n",  # a sibling module's private name
        "data/e.py": "from . import a\na._helper()\n",
        "store/__init__.py": "from .reader import load\n",  # a re-export: no cycle while nothing takes it back
        "store/reader.py": "from . import schema\nload = 1\n",
        "store/schema.py": "",
        "report/__init__.py": "from .plots import save\nVERSION = 1\n",
        "report/plots.py": "from . import VERSION\n",  # takes a name back from its package's __init__
    })
    assert sorted(check(root)) == [
        "featx/data/d.py:1: uses private _helper of featx.data.a",
        "featx/data/e.py:2: uses private _helper of featx.data.a",
        "import cycle: featx.data.a -> featx.data.b -> featx.data.c -> featx.data.a "
        "(featx/data/a.py:2, featx/data/b.py:1, featx/data/c.py:1)",
        "import cycle: featx.report -> featx.report.plots -> featx.report "
        "(featx/report/__init__.py:1, featx/report/plots.py:1)",
    ]
