"""SLURM: sharded extraction as one array job written from a template (``array.sbatch``).

:func:`submit_extract` writes the script beside the store (``<cache>/slurm/<store>/``, one log
per task under ``logs/``) and submits it with ``sbatch``; ``dry_run`` only prints it.
:func:`requeue_self` is what a task does when SLURM warns it of its time limit (SIGUSR1).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from .. import __version__, env
from ..errors import FeatxError, OptionError
from ..files import write_text
from ..report.escape import comment_text, sbatch_name, sbatch_value

TEMPLATE = "array.sbatch"


@dataclass(frozen=True)
class SlurmOptions:
    """How an extraction is submitted: ``shards`` array tasks, each with these ``#SBATCH`` resources (None: the
    cluster's default). Checked on construction."""

    shards: int = 1  # array tasks, one shard each
    partition: str | None = None
    time: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    max_running: int | None = None  # the array's % limit
    grace: int = 120  # seconds between SIGUSR1 and the time limit

    def __post_init__(self):
        if self.shards < 1:
            raise OptionError(f"--shards {self.shards}: need at least 1")
        if self.max_running is not None and self.max_running < 1:
            raise OptionError(f"--max-running {self.max_running}: need at least 1")

    def lines(self) -> list[str]:
        pairs = [("partition", self.partition), ("time", self.time), ("gpus-per-task", self.gpus_per_task),
                 ("cpus-per-task", self.cpus_per_task), ("mem", self.mem), ("account", self.account)]
        return [f"#SBATCH --{k}={sbatch_value(v, f'--{k}')}" for k, v in pairs if v not in (None, "")]


def array_script(command: Sequence[str], *, store: Path, name: str, logs: Path, workdir: Path,
                 options: SlurmOptions) -> str:
    """The sbatch script of an ``options.shards``-task array running ``command --shard $i/<shards>``.

    Every path, name and argument is data, never code: the command line is :func:`shlex.join`-ed, the folder
    ``shlex.quote``-d, ``#SBATCH`` values quoted the way sbatch reads them and comments kept to one line
    (:mod:`featx.report.escape`)."""
    count = options.shards
    template = resources.files(__package__).joinpath(TEMPLATE).read_text()
    output = sbatch_value(str(logs).replace("%", "%%") + "/%x-%A_%a.out", "the log folder")  # %% is a literal %
    return template.format(
        version=__version__, date=time.strftime("%Y-%m-%d %H:%M"), count=count, last=count - 1,
        limit=f"%{options.max_running}" if options.max_running else "", name=sbatch_name(name), output=output,
        grace=options.grace, resources="\n".join(options.lines()), workdir=shlex.quote(str(workdir)),
        store=comment_text(store), shard_glob=comment_text(f"{store.stem}.shard-*.h5"), command=shlex.join(command))


def featx_command(args: Sequence[str]) -> list[str]:
    """``python -m featx ARGS`` with this interpreter (the tasks run in the same environment)."""
    return [sys.executable, "-m", "featx", *args]


def write_script(store: Path, script: str) -> Path:
    """Write the script under ``<store dir>/slurm/<store stem>/`` (its ``logs/`` folder created too)."""
    folder = job_folder(store)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    path = folder / "extract.sbatch"
    return write_text(path, script)


def job_folder(store: Path) -> Path:
    return store.parent / "slurm" / store.stem


def sbatch(script: Path, *, wait: bool = False) -> str:
    """Submit ``script``; returns the job id. ``wait``: block until every task has ended."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise FeatxError("--slurm: `sbatch` is not on PATH; run on a SLURM login node, or use --dry-run to write "
                         "the script")
    cmd = [exe, "--parsable"] + (["--wait"] if wait else []) + [str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and not (wait and proc.stdout.strip()):
        raise FeatxError(f"sbatch {script} failed: {' '.join(proc.stderr.split()) or proc.returncode}")
    return proc.stdout.strip().split(";")[0].splitlines()[0] if proc.stdout.strip() else ""


def current_task() -> str | None:
    """This SLURM job's id as ``scontrol`` names it (``<array job>_<task>`` for an array task), or None."""
    job, task = env.SLURM_ARRAY_JOB_ID.get(), env.SLURM_ARRAY_TASK_ID.get()
    if job and task:
        return f"{job}_{task}"
    return env.SLURM_JOB_ID.get()


def requeue_self() -> str | None:
    """Put this SLURM task back in the queue (it resumes its store when it starts again); its id, or None."""
    task = current_task()
    exe = shutil.which("scontrol")
    if task is None or exe is None:
        return None
    proc = subprocess.run([exe, "requeue", task], capture_output=True, text=True)
    return task if proc.returncode == 0 else None


def option_args(options: dict) -> list[str]:
    """``{"with_logits": True, "split_ratios": (0.8, 0.1, 0.1), "layer": "fc2"}`` as featx command-line options."""
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(map(str, value))]
        else:
            args += [flag, str(value)]
    return args


def extract_script(args: Sequence[str], *, store: Path, options: SlurmOptions, name: str | None = None) -> str:
    """The array script of ``featx ARGS --shard $i/<shards>`` writing shards of ``store`` (logs beside it)."""
    return array_script(featx_command(args), store=store, name=name or f"featx-{store.stem[:40]}",
                        logs=job_folder(store) / "logs", workdir=Path.cwd(), options=options)


def submit(script: str, store: Path, *, wait: bool = False) -> tuple[str, Path]:
    """Write ``script`` beside ``store`` and sbatch it: (job id, script path)."""
    path = write_script(store, script)
    return sbatch(path, wait=wait), path


def submit_study_extract(study, options: dict, store: Path) -> str:
    """Run one pipeline extraction as an array job and wait for it; the merged store must then be complete."""
    from .status import extraction_status

    slurm = SlurmOptions(**study.slurm)
    store = store.resolve()
    args = ["extract", "--data", str(study.data), "--out", str(store), "--quiet",
            *option_args({k: v for k, v in options.items() if k != "out"})]
    job, _ = submit(extract_script(args, store=store, options=slurm, name=f"featx-{study.name}"[:48]), store, wait=True)
    status = extraction_status(store)
    if not status.done:
        bad = [f"{s.index} ({s.state})" for s in status.shards if s.state != "done"]
        raise FeatxError(f"SLURM job {job} ended but {store} is not complete; shards not done: {', '.join(bad) or '-'}; "
                         f"see the logs in {job_folder(store) / 'logs'} and run again to resume")
    return job
