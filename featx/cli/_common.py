"""Shared CLI plumbing: one-line errors with documented exit codes, and output helpers.

Exit codes: 0 success; 1 an unexpected error (a bug: ``FEATX_DEBUG=1`` shows the
traceback); 2 bad input (options, data, classifier or analysis requests); 3 weights;
4 store, or a full disk / quota / I/O error anywhere; 5 store locked by another writer; 130 interrupted.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Callable

import typer
from typer.core import TyperGroup

from .. import env
from ..errors import FeatxError, causes
from ..files import disk_error, is_disk_error
from ..report.runs import printable

EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Usage-error base classes: typer >= 0.2x vendors click (``TyperException``); older typer uses click's."""
    types = [t for t in (getattr(typer, "TyperException", None),) if t is not None]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


USAGE_ERRORS = _usage_error_types()


def _echo_error(message: str) -> None:
    text = " ".join(str(message).split())  # one line, whatever the message holds
    typer.echo(printable(f"error: {text}"), err=True)


def describe(exc: BaseException) -> str:
    """One line for an exception featx did not foresee, naming the file when the exception knows it."""
    if isinstance(exc, OSError) and exc.filename is not None:
        where = os.fsdecode(exc.filename) if isinstance(exc.filename, bytes) else str(exc.filename)
        return f"{where}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, UnicodeError):
        return f"a file name or text is not valid in this locale's encoding ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _filename(exc: BaseException) -> str | None:
    """The file an ``OSError`` (or one it was raised from) names, if any."""
    named = next((e.filename for e in causes(exc) if isinstance(e, OSError) and e.filename is not None), None)
    if named is None:
        return None
    return os.fsdecode(named) if isinstance(named, bytes) else str(named)


def handles_errors(fn: Callable) -> Callable:
    """Turn any exception into ``error: <message>`` on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, *USAGE_ERRORS):
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted; re-run the same command to resume", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:  # `featx info STORE | head`: the reader left; no error to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_UNEXPECTED) from None
        except Exception as exc:  # noqa: BLE001  (the one place every error becomes a line)
            if env.DEBUG.get():
                raise
            if isinstance(exc, FeatxError):
                _echo_error(str(exc))
                raise typer.Exit(exc.exit_code) from None
            if is_disk_error(exc):  # a write featx did not wrap (a library's, a cache's): still one line, exit 4
                full = disk_error(_filename(exc) or "a file", exc)
                _echo_error(str(full))
                raise typer.Exit(full.exit_code) from None
            _echo_error(f"{describe(exc)} (FEATX_DEBUG=1 shows the traceback)")
            raise typer.Exit(EXIT_UNEXPECTED) from None

    return wrapper


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (featx's and libraries') as one ``warning: ...`` line on stderr."""
    warn(" ".join(str(message).split()))


class OneLineErrors(TyperGroup):
    """The app's group: usage errors (bad option values, missing arguments) print one line, exit 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        warnings.showwarning = _warning_line
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except USAGE_ERRORS as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # `featx` alone: typer has printed the help
                ctx = getattr(exc, "ctx", None)
                hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
                message = exc.format_message().replace("Value error, ", "").rstrip(".")
                _echo_error(f"{message}{hint}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            _echo_error("aborted")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def out(msg: str = "") -> None:
    """Print a result line to stdout."""
    typer.echo(printable(msg))


def progress(msg: str) -> None:
    """Print a progress line to stderr."""
    typer.echo(printable(msg), err=True)


def warn(msg: str) -> None:
    """Print a warning line to stderr."""
    progress(f"warning: {msg}")


def command_args(ctx: typer.Context, *, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The options given to this command (not their defaults) as arguments again, minus ``exclude``.

    Used to run the same command elsewhere (a SLURM task): values are re-spelled from what was
    parsed, so abbreviations, ``--opt=value`` and short flags all come out in one canonical form.
    """
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if name in exclude or not getattr(param, "opts", None) or name not in ctx.params:
            continue
        source = ctx.get_parameter_source(name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params[name]
        long_opt = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            if value:
                args.append(long_opt)
            elif param.secondary_opts:
                args.append(max(param.secondary_opts, key=len))
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            args += [long_opt, str(getattr(v, "value", v))]
    return args
