"""The code blocks of README.md and docs/*.md, and the folder they run in (tests/test_docs.py).

Rules (docs/architecture.md, "Code blocks in the documentation"): ```python and ```bash blocks run,
unless the line just before the fence is ``<!-- not-run: reason -->``; ```text, ```math and ```toml
blocks are not code to run; every fenced block names its language. The README's first block (install and
run the quick start; run the tests) is left to tests/test_quickstart.py and .ci/run.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = {"python", "bash"}
NOT_CODE = {"text", "math", "toml"}
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")
FENCE = re.compile(r"^```(\S*)\s*$")
FRESH_MACHINE = ("the README's first block, the commands for a fresh machine: tests/test_quickstart.py runs the "
                 "quick start and .ci/run ends with the test command")


def pages() -> list[Path]:
    """README.md first, then docs/*.md in name order: the order their blocks run in."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason after "not-run:", "" when the marker gives none, None without marker

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN and self.not_run is None


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a markdown page, with the not-run marker on the line before it."""
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{start + 1}: a code block is never closed")
        marker = NOT_RUN.match(lines[start - 1].strip()) if start else None
        reason = marker.group(1).strip() if marker else None
        if page == ROOT / "README.md" and not out:
            reason = FRESH_MACHINE
        out.append(Block(page, start + 1, lang, "\n".join(lines[start + 1:j]) + "\n", reason))
        i = j + 1
    return out


def make_workspace(base: Path, store: Path, monet_dir: Path) -> Path:
    """A folder laid out like the repository's surroundings, ``<base>/main`` beside
    ``<base>/shared/data/monet-sisley``, whose ``main/cache`` already holds the store the docs extract
    (so their ``featx extract`` is a cache hit). Returns ``<base>/main``; set ``FEATX_CACHE`` to its
    ``cache`` while running blocks there."""
    from featx.extraction.options import ExtractOptions
    from featx.extraction.plan import plan_extraction

    main = base / "main"
    cache = main / "cache"
    (main / "examples").mkdir(parents=True)
    cache.mkdir()
    (base / "shared" / "data").mkdir(parents=True)
    (base / "shared" / "data" / "monet-sisley").symlink_to(monet_dir)
    previous = os.environ.get("FEATX_CACHE")
    os.environ["FEATX_CACHE"] = str(cache)
    try:
        plan = plan_extraction(ExtractOptions("efficientnet_lite0", base / "shared" / "data" / "monet-sisley",
                                              with_logits=True))
        shutil.copy(store, plan.out)
    finally:
        if previous is None:
            del os.environ["FEATX_CACHE"]
        else:
            os.environ["FEATX_CACHE"] = previous
    return main


_SLUG_DROP = re.compile(r"[^\w\- ]", re.UNICODE)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces to hyphens)."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in page.read_text().splitlines():
        if FENCE.match(line) or line.rstrip() == "```":
            in_code = not in_code
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).replace("`", "")
        slug = _SLUG_DROP.sub("", text.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(page: Path) -> list[str]:
    """Link targets of a page outside code blocks and inline code."""
    text, in_code, out = page.read_text().splitlines(), False, []
    for line in text:
        if FENCE.match(line) or line.rstrip() == "```":
            in_code = not in_code
            continue
        if not in_code:
            out += LINK.findall(re.sub(r"`[^`]*`", "", line))
    return out
