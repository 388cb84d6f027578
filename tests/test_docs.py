"""README.md and docs/*.md: every code block meant to run runs, the rest say why not, every relative link
resolves, and the reference pages name every option and environment variable featx has."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from docblocks import NOT_CODE, ROOT, RUN, anchors, blocks, links, make_workspace, pages

PAGES = pages()
ALL = [b for p in PAGES for b in blocks(p)]


def _id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------ the blocks' markings


def test_the_pages_exist():
    names = {p.name for p in PAGES}
    assert {"commands.md", "python-api.md", "store.md", "runtimes.md", "finetuning.md", "clusters.md",
            "benchmarks.md", "transferability.md", "environment.md", "architecture.md"} <= names
    assert len(ALL) > 10 and sum(b.runs for b in ALL) >= 8


def test_every_block_names_its_language_and_every_skipped_block_says_why():
    problems = []
    for b in ALL:
        if b.lang not in RUN | NOT_CODE:
            problems.append(f"{b.where}: block language {b.lang!r}: use one of {sorted(RUN | NOT_CODE)}")
        if b.not_run is not None and b.lang not in RUN:
            problems.append(f"{b.where}: a not-run marker on a {b.lang!r} block, which never runs")
        if b.not_run is not None and len(b.not_run) < 10:
            problems.append(f"{b.where}: <!-- not-run: --> must state a reason, got {b.not_run!r}")
    assert not problems, "\n".join(problems)


def test_the_readme_starts_with_the_two_commands_for_a_fresh_machine():
    """The first is run by tests/test_quickstart.py; the second is the command .ci/run ends with."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "# featx" and lines[2] == "```bash"
    first = blocks(ROOT / "README.md")[0]
    assert first.line == 3 and first.lang == "bash"
    commands = [line.split("#")[0].strip() for line in first.code.splitlines()]
    assert len(commands) == 2
    install, tests = commands
    assert install == "pip install -e '.[dev]' && bash pipelines/quickstart.sh"
    assert (ROOT / "pipelines" / "quickstart.sh").is_file()
    assert "quickstart.sh" in (ROOT / "tests" / "test_quickstart.py").read_text()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci, f".ci/run does not run the README's test command {tests!r}"
    assert "python -m pip install -e '.[dev]'" in ci  # and installs as the README does


def test_the_readme_stays_short_and_its_pictures_small():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 170
    for png in (ROOT / "docs").rglob("*.png"):
        assert png.stat().st_size < 200_000, f"{png.relative_to(ROOT)}: keep committed figures under 200 KB"


# ------------------------------------------------------------------ links


def test_every_relative_link_resolves():
    problems = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problems.append(f"{_id(page)}: link to {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{_id(page)}: link to {target}: no heading #{anchor} in {dest.name}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ reference pages complete


def test_every_environment_variable_is_documented():
    from featx.env import VARS

    text = (ROOT / "docs" / "environment.md").read_text()
    missing = [name for name in VARS if f"`{name}`" not in text]
    assert not missing, f"docs/environment.md does not describe {missing}"


def test_every_option_of_every_command_is_documented():
    import typer

    from featx.cli import app

    text = (ROOT / "docs" / "commands.md").read_text()
    sections = dict(re.findall(r"^## featx (\S+)\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL))
    problems = []

    def visit(cmd, path):
        subs = getattr(cmd, "commands", None)
        for name, sub in (subs or {}).items():
            visit(sub, [*path, name])
        if not path:
            return
        section = sections.get(path[0])
        if section is None:
            problems.append(f"no section '## featx {path[0]}'")
            return
        if len(path) > 1 and f"featx {' '.join(path)}" not in section:
            problems.append(f"featx {' '.join(path)} is not described")
        for param in cmd.params:
            for opt in [*param.opts, *param.secondary_opts]:
                if opt.startswith("-") and opt != "--help" and f"`{opt}`" not in section:
                    problems.append(f"featx {' '.join(path)}: option {opt} is not in docs/commands.md")

    visit(typer.main.get_command(app), [])
    assert not problems, "\n".join(problems)


def test_the_license_ships_in_the_wheel_metadata():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert re.search(r'^license-files = \["LICENSE"\]', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)


# ------------------------------------------------------------------ running the blocks


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, monet_lite0_store, monet_dir):
    main = make_workspace(tmp_path_factory.mktemp("docs"), monet_lite0_store, monet_dir)
    previous = os.environ.get("FEATX_CACHE")
    os.environ["FEATX_CACHE"] = str(main / "cache")
    yield main
    if previous is None:
        del os.environ["FEATX_CACHE"]
    else:
        os.environ["FEATX_CACHE"] = previous


def _run_bash(block, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "FEATX_CACHE": str(cwd / "cache")}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(b.runs for b in blocks(p))], ids=_id)
def test_the_code_blocks_of_each_page_run(page, workspace, monkeypatch):
    """In page order (README first), one Python namespace per page, in a folder whose cache holds the
    quick start's store."""
    import matplotlib
    import matplotlib.pyplot as plt

    runnable = [b for b in blocks(page) if b.runs]
    monkeypatch.chdir(workspace)
    backend = matplotlib.get_backend()
    namespace: dict = {}
    output = ""
    for b in runnable:
        if b.lang == "python":
            exec(compile(b.code, b.where, "exec"), namespace)  # noqa: S102
        else:
            output += _run_bash(b, workspace)
    assert matplotlib.get_backend() == backend and plt.get_fignums() == []  # a notebook's backend is left alone

    name = _id(page)
    if name == "README.md":
        assert "cache hit" in output  # the fixture's store is the one the quick start extracts
        assert (workspace / "runs" / "analyze-monet" / "scores.json").is_file()
        assert "claude-monet" in output
        assert namespace["store"].extraction.cache_hit and namespace["run"].metrics["accuracy"] > 0.7
    elif name == "docs/python-api.md":
        from matplotlib.figure import Figure

        assert namespace["store"].extraction.cache_hit
        assert namespace["run"].metrics["accuracy"] > 0.7
        assert isinstance(namespace["fig"], Figure) and (namespace["run"].path / "confusion_matrix.png").is_file()
        assert namespace["fig"]._repr_png_().startswith(b"\x89PNG")  # how Jupyter shows it without pyplot
        assert any("umap" in n for n in namespace["result"].figures)
    elif name == "docs/store.md":
        assert namespace["X"].shape == (600, 1280) and namespace["logits"].shape == (600, 1000)
    elif name == "docs/clusters.md":
        assert "#SBATCH" in output or "sbatch" in output
