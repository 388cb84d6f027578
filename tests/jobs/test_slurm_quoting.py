"""The SLURM array script of a hostile ``--data`` / ``--out`` / working folder: spaces, both quotes, backticks,
``$(touch ...)``, ``#`` and a line break are data. The script the real CLI prints (``--dry-run``) passes
``bash -n``; run under bash with the interpreter swapped for a recorder, it hands featx exactly those paths and
creates no marker file; its ``#SBATCH`` lines read back (the way sbatch splits them) as the exact values."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import rgb

FEATX = [sys.executable, "-m", "featx"]


def _sbatch_words(line: str) -> list[str]:
    """The words sbatch takes from one ``#SBATCH`` line (``_get_argument`` in slurm's src/sbatch/opt.c):
    blanks split, ``'`` and ``"`` quote, a backslash escapes the next character, an unquoted ``#`` ends it."""
    words, i, rest = [], 0, line[len("#SBATCH"):]
    while i < len(rest):
        while i < len(rest) and rest[i].isspace():
            i += 1
        if i >= len(rest):
            break
        word, quote, done = "", None, False
        while i < len(rest) and (quote or not rest[i].isspace()):
            c = rest[i]
            if c == "\\":
                word, i = word + rest[i + 1], i + 2
                continue
            if quote:
                if c == quote:
                    quote = None
                else:
                    word += c
            elif c in "'\"":
                quote = c
            elif c == "#":
                done = True
                break
            else:
                word += c
            i += 1
        assert quote is None, f"unmatched quote in {line!r}"
        if word:
            words.append(word)
        if done:
            break
    return words


@pytest.fixture
def hostile(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    data = tmp_path / "in" / (f"my data 'q' \"dq\" `touch {marks}/bt` $(touch {marks}/sub) ; touch {marks}/semi #x"
                              f"\ntouch {marks}/nl")
    for cls in ("a", "b"):
        (data / cls).mkdir(parents=True)
        for i in range(3):
            rgb(i, (16, 16)).save(data / cls / f"{i}.png")
    work = tmp_path / "work 'w' $(touch x)"
    work.mkdir()
    out = tmp_path / f"store 'q' \"dq\" $(touch {marks}/out) #x.h5"
    return {"data": data, "work": work, "out": out, "marks": marks, "root": tmp_path}


def _dry_run(h, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([*FEATX, "extract", "-b", "pixels", "-d", str(h["data"]), "--out", str(h["out"]),
                           "--slurm", "--shards", "2", *extra, "--dry-run"], capture_output=True, text=True,
                          cwd=h["work"], timeout=300)


def test_hostile_paths_in_a_slurm_script_are_quoted_never_run(hostile):
    h = hostile
    partition = "gpu $(touch x) #1 'q'"
    r = _dry_run(h, "--partition", partition)
    assert r.returncode == 0, r.stderr
    script = r.stdout + "\n"
    path = h["root"] / "extract.sbatch"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    # the command as bash words: the exact paths, one word each
    command = script[script.index("\nexec ") + len("\nexec "):]
    words = shlex.split(command)
    assert words[:4] == [sys.executable, "-m", "featx", "extract"]
    assert words[words.index("--data") + 1] == str(h["data"]) and words[words.index("--out") + 1] == str(h["out"])
    assert words[-2:] == ["--shard", "${SLURM_ARRAY_TASK_ID}/2"]

    # run it under bash, the interpreter swapped for a recorder of its argv and working folder
    record = h["root"] / "argv"
    fake = h["root"] / "fake-python"
    fake.write_text('#!/bin/sh\npwd > "$RECORD.pwd"\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > "$RECORD"\n')
    fake.chmod(0o755)
    swapped = script.replace(f"\nexec {shlex.quote(sys.executable)} ", f"\nexec {shlex.quote(str(fake))} ", 1)
    assert swapped != script
    path.write_text(swapped)
    run = subprocess.run(["bash", str(path)], capture_output=True, text=True, cwd=h["root"], timeout=60,
                         env={**os.environ, "RECORD": str(record), "SLURM_ARRAY_TASK_ID": "1"})
    assert run.returncode == 0, run.stderr
    argv = record.read_text().split("\0")[:-1]
    assert argv == [*words[1:-1], "1/2"]
    assert argv[argv.index("--data") + 1] == str(h["data"])
    assert Path(record.with_suffix(".pwd").read_text().rstrip("\n")) == h["work"]
    assert not any(h["marks"].iterdir()), sorted(p.name for p in h["marks"].iterdir())  # nothing ran
    assert not (h["work"] / "x").exists() and not (h["root"] / "x").exists()

    # the #SBATCH lines read back as the exact values
    directives = dict(w.split("=", 1) for line in script.splitlines() if line.startswith("#SBATCH")
                      for w in _sbatch_words(line) if "=" in w)
    logs = h["out"].parent / "slurm" / h["out"].stem / "logs"
    assert directives["--output"] == f"{logs}/%x-%A_%a.out"
    assert directives["--partition"] == partition
    assert re.fullmatch(r"featx-[\w.+-]+", directives["--job-name"]), directives["--job-name"]  # a plain label
    for line in script.splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            assert "\n" not in line  # a comment stays one line (the split proves it)
    assert script.count("\n# ") == 4 and "cd " in script


def test_a_line_break_in_the_store_name_is_refused_not_written(hostile):
    h = hostile
    h["out"] = h["root"] / "store\ntouch x.h5"
    r = _dry_run(h)
    assert r.returncode == 2 and "control character" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout == "" and not (h["root"] / "slurm").exists()
