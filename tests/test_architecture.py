"""The architecture rules, read from the source with ``ast`` (every import, lazy ones inside functions too).

* Imports point down the layers below; packages of one layer never import each other.
* h5py only in ``store/``; typer and click only in ``cli/``; openvino only in ``engine/openvino.py`` and
  ``engine/export.py``; torch, torchvision and timm only in ``engine/embed.py`` and ``engine/export.py``
  (the PyTorch runtime and the conversion), the builders (and ``backbones/blocks.py``), ``learn/predict.py``
  and ``learn/finetune/``.
* ``learn/classify.py``, ``analysis/transfer.py`` and ``analysis/project.py`` take arrays: no store,
  no backbone, no torch.
* No private name (``_x``) is used outside the package that defines it.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

FEATX = Path(__file__).resolve().parents[1] / "featx"

LAYERS = [
    {"featx.env"},  # the environment variables featx reads, read only there
    {"featx.config", "featx.errors", "featx.stats", "featx.faults"},  # leaves: import nothing of featx but env
    {"featx.files"},  # safe writes (temporary name, rename) and disk-full errors: above the leaves, below all else
    {"featx.data", "featx.backbones"},
    {"featx.store", "featx.engine", "featx.report"},
    {"featx.extraction", "featx.learn", "featx.analysis"},  # the stages
    {"featx.api"},  # the Python API: one function per command, the Store object, ImageEmbedder
    {"featx.jobs"},  # cluster and pipeline orchestration: shards' status, SLURM submission, `featx run`
    {"featx.cli"},
]
ROOT = "featx"  # __init__ (lazy names, __version__) and __main__

ONLY_IN = {
    "h5py": ("featx/store/",),
    "typer": ("featx/cli/",),
    "click": ("featx/cli/",),
    "openvino": ("featx/engine/openvino.py", "featx/engine/export.py"),
    **{lib: ("featx/engine/embed.py", "featx/engine/export.py", "featx/backbones/build.py", "featx/backbones/torchvision.py",
             "featx/backbones/timm.py", "featx/backbones/pixels.py", "featx/backbones/tap.py",
             "featx/backbones/catalog.py", "featx/backbones/weights.py", "featx/backbones/blocks.py",
             "featx/learn/predict.py", "featx/learn/finetune/")
       for lib in ("torch", "torchvision", "timm")},
}

ARRAYS_ONLY = {"featx/learn/classify.py", "featx/analysis/transfer.py", "featx/analysis/project.py"}
ARRAYS_MAY_USE = {"featx.errors", "featx.stats", "featx.config", "featx.analysis.transfer"}


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
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and _defining_package(target, root) != here_package:
                problems.append(f"{where}: uses private {', '.join(private)} of {target}")
        for line, target, name in _private_attributes(path, root):
            if _defining_package(target, root) != here_package:
                problems.append(f"{rel}:{line}: uses private {name} of {target}")
    return problems


def _defining_package(target: str, root: Path) -> str:
    return target if (root.parent / target.replace(".", "/")).is_dir() else target.rpartition(".")[0]


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
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            yield node.lineno, aliases[node.value.id], node.attr


def test_featx_follows_the_architecture_rules():
    assert check() == []


def _plant(tmp_path: Path, rel: str, line: str) -> Path:
    copy = tmp_path / "featx"
    shutil.copytree(FEATX, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / rel
    target.write_text(target.read_text() + f"\n{line}\n")
    return copy


def test_a_planted_upward_import_is_caught(tmp_path):
    problems = check(_plant(tmp_path, "store/reader.py", "import featx.cli"))
    assert any("featx/store/reader.py" in p and "imports featx.cli, which is above it" in p for p in problems)
    assert len(problems) == 1


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
