"""The quick tier, ``python -m pytest -q -m "not slow"``, still reaches every test file: each
``tests/**/test_*.py`` keeps at least one test that is not marked ``slow`` (pyproject's ``markers`` says
what the tier is for). Read from the source with ``ast`` (no imports, well under a second); the slow
cross-check asks pytest itself, which collects the whole suite (tens of seconds)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _is_slow(node: ast.AST) -> bool:
    """``pytest.mark.slow`` / ``mark.slow``, alone or in a list or tuple of marks."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_is_slow(e) for e in node.elts)
    if isinstance(node, ast.Call):  # pytest.mark.slow(...) is the mark too
        return _is_slow(node.func)
    return isinstance(node, ast.Attribute) and node.attr == "slow" and (
        isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
        or isinstance(node.value, ast.Name) and node.value.id == "mark")


def _marked_slow(body: list[ast.stmt]) -> bool:
    """A ``pytestmark = ...slow...`` assignment in a module's or class's body."""
    return any(isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in s.targets)
               and _is_slow(s.value) for s in body)


def _all_params_slow(deco: ast.expr) -> bool:
    """``@pytest.mark.parametrize(..., [pytest.param(..., marks=pytest.mark.slow), ...])`` with every case slow."""
    if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "parametrize"
            and len(deco.args) >= 2 and isinstance(deco.args[1], (ast.List, ast.Tuple)) and deco.args[1].elts):
        return False
    return all(isinstance(p, ast.Call) and any(k.arg == "marks" and _is_slow(k.value) for k in p.keywords)
               for p in deco.args[1].elts)


def quick_tests(path: Path) -> list[str]:
    """Names of the tests in ``path`` that ``-m "not slow"`` keeps."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if _marked_slow(tree.body):
        return []
    found = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                if not (_marked_slow(node.body) or any(_is_slow(d) for d in node.decorator_list)):
                    visit(node.body, f"{prefix}{node.name}::")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                if not any(_is_slow(d) or _all_params_slow(d) for d in node.decorator_list):
                    found.append(prefix + node.name)

    visit(tree.body, "")
    return found


def _test_files() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def test_every_test_file_keeps_a_quick_test():
    files = _test_files()
    assert len(files) >= 40, files  # the glob found the suite
    alone = [str(p.relative_to(ROOT)) for p in files if not quick_tests(p)]
    assert not alone, f"only slow tests in {alone}: keep (or add) one cheap test there for the quick tier"


def test_the_reader_sees_the_marks_pytest_sees(tmp_path):
    f = tmp_path / "test_x.py"
    f.write_text("import pytest\nfrom pytest import mark\n\n"
                 "@pytest.mark.slow\ndef test_a(): pass\n\n"
                 "@mark.slow\ndef test_b(): pass\n\n"
                 "@pytest.mark.parametrize('x', [pytest.param(1, marks=pytest.mark.slow)])\ndef test_c(x): pass\n\n"
                 "@pytest.mark.parametrize('x', [pytest.param(1, marks=[pytest.mark.slow]), 2])\ndef test_d(x): pass\n\n"
                 "class TestE:\n    pytestmark = [pytest.mark.slow]\n    def test_e(self): pass\n\n"
                 "class TestF:\n    def test_f(self): pass\n")
    assert quick_tests(f) == ["test_d", "TestF::test_f"]
    f.write_text("import pytest\npytestmark = [pytest.mark.filterwarnings('ignore'), pytest.mark.slow]\n"
                 "def test_a(): pass\n")
    assert quick_tests(f) == []


@pytest.mark.slow
def test_pytest_collects_a_quick_test_in_every_file():
    """The same question asked of pytest: what ``-m "not slow"`` collects (marks set in conftest count too)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", "not slow"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    want = {str(p.relative_to(ROOT)) for p in _test_files()}
    assert want <= collected, sorted(want - collected)
    assert re.search(r"\d+/\d+ tests collected \(\d+ deselected\)", proc.stdout), proc.stdout[-500:]
