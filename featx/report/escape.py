"""Every user-controlled string (a class label, an image id, a store, file or folder name, a path) that
featx writes into a format with markup, formulas or code goes through one helper here and stays text:

* HTML: :func:`html_text` (element text, attribute values) and :func:`script_json` (data inside ``<script>``);
  the page's own JavaScript puts data into the page with ``textContent`` only, never ``innerHTML``.
* Markdown: :func:`md_text` (inline text and table cells) and :func:`md_code` (a code span).
* CSV: :func:`csv_cell` (a text cell a spreadsheet would run as a formula gets OWASP's leading ``'``).
* SLURM batch scripts: :func:`sbatch_value` (the value of a ``#SBATCH`` directive), :func:`sbatch_name`
  (a job name) and :func:`comment_text` (a ``#`` comment line); shell words go through :func:`shlex.quote` /
  :func:`shlex.join` and are never run through a shell.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence

from ..errors import OptionError


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (surrogate escapes) shown as ``\\xNN``, so it can be
    printed, drawn in a figure or written as UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

# ---------------------------------------------------------------- HTML


def html_text(text) -> str:
    """``text`` for HTML element content or a quoted attribute value (``<>&"'`` as entities)."""
    return html.escape(printable(str(text)), quote=True)


_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(obj) -> str:
    """``obj`` as compact JSON that is safe inside ``<script type="application/json">``: no ``</script>``,
    ``<!--`` or ``]]>`` can end or change the element, since ``<``, ``>`` and ``&`` appear only as ``\\uXXXX``
    escapes (still the same JSON strings for ``JSON.parse``)."""
    text = json.dumps(obj, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_UNSAFE[m.group()], text)


# ---------------------------------------------------------------- Markdown

def _flat(text) -> str:
    """``text`` printable and on one line: line breaks and other control characters become spaces."""
    return "".join(c if c.isprintable() else " " for c in printable(str(text)))


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#$!])")
_MD_LINE_START = re.compile(r"^(\s*)([-+](?=\s|$)|\d{1,9}(?=[.)](\s|$)))")


def md_text(text) -> str:
    """``text`` as literal Markdown text, safe in a table cell or a list item: every character that makes
    emphasis, code, links, images, raw HTML, entities, math, headings or a table column (``\\ ` * _ [ ] < > | ~
    & # $ !``) is backslash-escaped; line breaks and other control characters become spaces; a leading ``- ``,
    ``+ `` or ``1. `` cannot start a list. Numbers (``-0.5``, ``0.812``) come out unchanged."""
    s = _flat(text)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return _MD_LINE_START.sub(lambda m: m.group(1) + ("\\" + m.group(2) if not m.group(2).isdigit()
                                                        else m.group(2) + "\\"), s)


def md_table(head: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """A Markdown table as lines: the header (featx's own words, as given), the rule, then one line per row whose
    every cell is text (:func:`md_text`): a value holding ``|``, backticks or HTML cannot add a column or markup."""
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(md_text(c) for c in row) + " |" for row in rows)]


def md_code(text) -> str:
    """``text`` as one Markdown code span (shown verbatim, nothing inside is markup): fenced by more
    backticks than the longest run inside it; line breaks become spaces. Not for table cells (a ``|``
    still splits a cell there): use :func:`md_text`."""
    s = _flat(text)
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith(("`", " ")) or s.endswith(("`", " ")) else ""
    return f"{fence}{pad}{s}{pad}{fence}"


# ---------------------------------------------------------------- CSV

_FORMULA_START = tuple("=+-@\t\r\n") + tuple("\uff1d\uff0b\uff0d\uff20")  # and their full-width forms
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value):
    """``value`` for a CSV meant for spreadsheets (OWASP CSV injection): a text cell starting with ``=``,
    ``+``, ``-``, ``@``, a tab or a line break gets a leading ``'`` so no spreadsheet runs it as a formula.
    Numbers, and text that is a plain number such as ``-0.5``, are returned unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


# ---------------------------------------------------------------- SLURM batch scripts

_SBATCH_PLAIN = re.compile(r"[A-Za-z0-9_./%@:+=,-]+")


def _one_line(text: str, what: str) -> str:
    s = printable(str(text))
    bad = next((c for c in s if not c.isprintable()), None)
    if bad is not None:
        raise OptionError(f"{what} {s!r} contains the control character {bad!r}; a SLURM script cannot hold it "
                          "on one line: rename it")
    return s


def sbatch_value(value, what: str = "a #SBATCH value") -> str:
    """``value`` for one ``#SBATCH --opt=VALUE`` line, read back by sbatch as exactly ``value``: as is when it
    holds only plain characters, else in double quotes with ``\\ " ' #`` backslash-escaped (sbatch splits
    directives at blanks, strips quotes and takes an unescaped ``#`` as a comment). A line break or other
    control character is refused (:class:`~featx.errors.OptionError`): it would end the directive."""
    s = _one_line(value, what)
    if _SBATCH_PLAIN.fullmatch(s):
        return s
    return '"' + re.sub(r"([\\\"'#])", r"\\\1", s) + '"'


def sbatch_name(name: str) -> str:
    """A SLURM job name made of plain characters only (others become ``_``): it is only a label."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", printable(str(name)))[:100] or "featx"


def comment_text(text) -> str:
    """``text`` for one ``#`` comment line of a shell script: a line break (or any control character) is
    written as its escape (``\\n``), so nothing after it can become a command."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in printable(str(text)))
