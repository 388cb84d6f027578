"""Study pipelines: a TOML file (read with :mod:`tomllib`) declaring data, backbones, classifiers and
analyses, run as steps in order, each skipped when its outputs are already complete.

A step is done when:

* extract: the store is a cache hit for the data (the same test ``featx extract`` makes);
* fit / analyze: its output folder holds ``.featx-step.json`` whose key (the input stores'
  fingerprints, rows and last update, plus the step's settings) equals the current key.

So a re-submitted job does only what is left, and a re-extracted store re-runs the steps after it.
See ``pipelines/*.toml`` for the format.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import tomllib

from ..analysis.analyze import AnalyzeOptions, analyze
from ..errors import OptionError
from ..extraction.options import ExtractOptions
from ..extraction.plan import plan_extraction, store_state
from ..extraction.run import extract
from ..files import write_json
from ..learn.fit import FitOptions, fit_stores
from ..store.reader import load_features, read_attrs
from .slurm import SlurmOptions, submit_study_extract

MARKER = ".featx-step.json"
EXTRACT_KEYS = {"backbone", "weights", "layer", "pool", "tta", "dtype", "with_logits", "image_size",
                "label_from_name", "split_seed", "split_ratios", "precision", "out", "batch_size", "workers", "device",
                "hash"}
FIT_KEYS = set(FitOptions.__dataclass_fields__) - {"out", "name", "runs_dir", "overwrite"}
ANALYZE_KEYS = set(AnalyzeOptions.__dataclass_fields__) - {"runs_dir", "overwrite"}
SLURM_KEYS = set(SlurmOptions.__dataclass_fields__) - {"grace"}


@dataclass
class Study:
    """A parsed pipeline file."""

    path: Path
    name: str
    data: Path
    runs: Path
    extracts: list[dict]
    fit: dict | None
    analyze: dict | None
    slurm: dict = field(default_factory=dict)


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(os.path.expandvars(value)))
    return p if p.is_absolute() else (base / p)


def _check(table: dict, allowed: set[str], where: str, path: Path) -> dict:
    table = {k.replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise OptionError(f"{path}: [{where}] has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return table


def load_study(path: str | Path) -> Study:
    """Parse and check a pipeline file; relative paths are relative to the file's folder."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise OptionError(f"{path}: no such pipeline file") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{path}: not valid TOML ({exc})") from None
    base = path.resolve().parent
    if "data" not in doc:
        raise OptionError(f"{path}: needs data = \"<image folder or manifest>\" at the top")
    extracts = doc.get("extract") or []
    if isinstance(extracts, dict):
        extracts = [extracts]
    if not extracts or any("backbone" not in e for e in extracts):
        raise OptionError(f"{path}: needs at least one [[extract]] table with a backbone")
    extracts = [_check(e, EXTRACT_KEYS, "extract", path) for e in extracts]
    for e in extracts:
        if "out" in e:
            e["out"] = _resolve(base, e["out"])
        if "split_ratios" in e:
            e["split_ratios"] = tuple(e["split_ratios"])
    fit = _check(doc["fit"], FIT_KEYS, "fit", path) if "fit" in doc else None
    analysis = _check(doc["analyze"], ANALYZE_KEYS, "analyze", path) if "analyze" in doc else None
    slurm = _check(doc.get("slurm", {}), SLURM_KEYS, "slurm", path)
    return Study(path, str(doc.get("name") or path.stem), _resolve(base, str(doc["data"])),
                 _resolve(Path.cwd(), str(doc.get("runs", "runs"))), extracts, fit, analysis, slurm)


@dataclass
class StepResult:
    name: str
    skipped: bool
    detail: str = ""


def _stamp(store: Path) -> dict:
    a = read_attrs(store, require_complete=True)
    return {"store": str(store.resolve()), "fingerprint": a.get("fingerprint"), "rows": a["n_rows"],
            "updated": str(a.get("updated")), "generation": int(a.get("generation", 0))}


def _key(stores: list[Path], settings: dict) -> str:
    blob = json.dumps({"inputs": [_stamp(s) for s in stores], "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _done(folder: Path, key: str) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def _mark(folder: Path, key: str, step: str) -> None:
    write_json(folder / MARKER, {"key": key, "step": step})


def run_study(path: str | Path, *, slurm: bool = False, force: bool = False, progress: bool = True,
              echo: Callable[[str], None] = lambda s: None) -> list[StepResult]:
    """Run a pipeline's steps in order (extract each backbone, fit, analyze), skipping finished ones."""
    study = load_study(path)
    results: list[StepResult] = []
    stores: list[Path] = []
    for e in study.extracts:
        options = ExtractOptions(data=study.data, shard="none", progress=progress, **e)
        plan = plan_extraction(options)
        name = f"extract {plan.cfg.backbone}:{plan.cfg.layer}"
        state = store_state(plan, options.sync)
        if state is not None and state.cache_hit and not force:
            results.append(StepResult(name, True, f"{plan.out} is complete"))
            echo(f"skip {name}: {plan.out} is complete")
        elif slurm:
            job = submit_study_extract(study, e, plan.out)
            results.append(StepResult(name, False, f"SLURM array job {job}"))
            echo(f"done {name}: SLURM array job {job} -> {plan.out}")
        else:
            echo(f"run  {name} -> {plan.out}")
            res = extract(options)
            results.append(StepResult(name, False, f"{res.n_new} rows computed"))
        stores.append(plan.out)
    if study.fit is not None:
        results.append(_fit(study, stores, force, echo))
    if study.analyze is not None:
        results.append(_analyze(study, stores, force, echo))
    return results


def _fit(study: Study, stores: list[Path], force: bool, echo) -> StepResult:
    settings = dict(study.fit)

    def run(folder: Path) -> None:
        fit_stores([load_features(s) for s in stores], FitOptions(**settings, out=folder, overwrite=True), echo=echo)

    return _step("fit", study, stores, settings, run, force, echo)


def _analyze(study: Study, stores: list[Path], force: bool, echo) -> StepResult:
    settings = dict(study.analyze)

    def run(folder: Path) -> None:
        analyze(stores, AnalyzeOptions(**settings, runs_dir=study.runs, overwrite=True), out=folder, log=echo)

    return _step("analyze", study, stores, settings, run, force, echo)


def _step(name: str, study: Study, stores: list[Path], settings: dict, run: Callable[[Path], None], force: bool,
          echo) -> StepResult:
    """Run a step on ``stores`` into ``<runs>/<study>/<name>/`` unless its marker says it is up to date."""
    folder = study.runs / study.name / name
    key = _key(stores, settings)
    if _done(folder, key) and not force:
        echo(f"skip {name}: {folder} is up to date")
        return StepResult(name, True, str(folder))
    echo(f"run  {name} -> {folder}")
    run(folder)
    _mark(folder, key, name)
    return StepResult(name, False, str(folder))
