"""Every command's --help shows its option texts whole: rich markup must not eat a bracketed word."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from featx.cli import app


def _commands(cmd, path=()):
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))
    if path:
        yield path, cmd


def test_bracketed_words_in_help_texts_are_shown():
    runner = CliRunner()
    checked = 0
    for path, cmd in _commands(typer.main.get_command(app)):
        texts = [p.help or "" for p in cmd.params] + [cmd.help or ""]
        words = {m for t in texts for m in re.findall(r"\[([a-z_]+)\]", t)}
        if not words:
            continue
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output
        for word in words:
            assert f"[{word}]" in out, f"featx {' '.join(path)} --help drops '[{word}]' (escape it as \\[{word}])"
            checked += 1
    assert checked >= 2  # featx neighbors' featx[ann] and featx run's [slurm] at least
