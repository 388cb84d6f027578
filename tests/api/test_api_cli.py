"""The CLI is a thin layer over featx.api: the same options everywhere, the same stores and metrics."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
from helpers import copy_subset
from typer.testing import CliRunner

import featx
from featx import api
from featx.analysis.analyze import AnalyzeOptions
from featx.cli import analyze as cli_analyze
from featx.cli import app
from featx.cli import extract as cli_extract
from featx.cli import fit as cli_fit
from featx.cli import predict as cli_predict
from featx.extraction.options import ExtractOptions
from featx.learn.fit import FitOptions
from featx.store.reader import load_features

# CLI parameter -> API parameter where the names differ (the option's flag is the API name)
RENAMED = {"out_path": "out", "hash_files": "hash", "out_dir": "out", "quiet": "progress", "as_json": None}
CLI_ONLY = {"extract": {"ctx", "slurm", "shards", "partition", "time_limit", "gpus_per_task", "cpus_per_task",
                        "mem", "account", "max_running", "wait", "dry_run"}}  # cluster submission (featx.jobs)
API_ONLY = {"extract": {"on_batch"}, "fit": {"echo"}, "analyze": {"log"}, "predict": {"errors"}}


def _params(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def _cli_names(command, name: str) -> set[str]:
    names = {RENAMED.get(p, p) for p in _params(command)} - CLI_ONLY.get(name, set())
    return {n for n in names if n is not None}


def test_api_extract_has_exactly_the_fields_of_the_options():
    ours = _params(api.extract)
    fields = {f.name: f for f in dataclasses.fields(ExtractOptions)}
    assert [n for n in ours if n not in API_ONLY["extract"]] == list(fields)
    for name, f in fields.items():
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if not f.kw_only else inspect.Parameter.KEYWORD_ONLY
        default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert (ours[name].kind, ours[name].default) == (kind, default), name
    assert all(n in api.extract.__doc__ for n in fields), "every option documented in help(featx.extract)"


def test_extract_cli_options_are_the_options_fields_and_the_submission():
    cli = _cli_names(cli_extract.extract, "extract")
    assert cli == {f.name for f in dataclasses.fields(ExtractOptions)}, sorted(cli)
    assert CLI_ONLY["extract"] - {"ctx"} == cli_extract.SUBMISSION


def test_every_cli_option_is_an_api_parameter_and_back():
    pairs = {"extract": (cli_extract.extract, api.extract), "fit": (cli_fit.fit, api.fit),
             "analyze": (cli_analyze.analyze, api.analyze), "predict": (cli_predict.predict, api.predict)}
    for name, (command, function) in pairs.items():
        cli = _cli_names(command, name)
        ours = set(_params(function)) - API_ONLY.get(name, set())
        assert cli == ours, (name, sorted(cli ^ ours))
    fields = {f.name for f in dataclasses.fields(AnalyzeOptions)}
    assert fields <= set(_params(api.analyze)), sorted(fields - set(_params(api.analyze)))


def test_fit_options_are_the_options_of_the_api_and_the_cli_with_the_same_defaults():
    """``featx.fit`` and ``featx fit`` each build one FitOptions: its fields are their options, nothing else."""
    fields = {f.name: f.default for f in dataclasses.fields(FitOptions)}
    api_params = {n: p.default for n, p in _params(api.fit).items() if n not in {"stores", *API_ONLY["fit"]}}
    assert set(fields) == set(api_params) == _cli_names(cli_fit.fit, "fit") - {"stores"}
    differ = {n for n in fields if fields[n] != api_params[n]}
    assert differ == {"class_weight"}  # None (not given, as in a pipeline file) vs "none": the same weights


@pytest.mark.slow
def test_api_and_cli_give_the_same_store_and_the_same_metrics(tmp_path, monet_dir):
    data = copy_subset(monet_dir / "train", tmp_path / "data", per_class=8)
    runner = CliRunner()
    done = runner.invoke(app, ["extract", "-b", "efficientnet_lite0", "--weights", "none", "--layer", "features",
                               "--pool", "gem", "-d", str(data), "-o", str(tmp_path / "cli.h5"), "--split-seed",
                               "3", "-q"])
    assert done.exit_code == 0, done.output
    store = featx.extract("efficientnet_lite0", data, out=tmp_path / "api.h5", weights="none", layer="features",
                          pool="gem", split_seed=3, progress=False)
    a, b = load_features(tmp_path / "cli.h5"), load_features(store.path)
    assert a.fingerprint == b.fingerprint and a.classes == b.classes
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.split, b.split)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)

    done = runner.invoke(app, ["fit", str(store.path), "--clf", "softmax", "--cv", "3", "--out",
                               str(tmp_path / "cli-run")])
    assert done.exit_code == 0, done.output
    run = featx.fit(store.path, clf="softmax", cv=3, out=tmp_path / "api-run")
    cli_metrics = json.loads((tmp_path / "cli-run" / "metrics.json").read_text())
    timing = {"fit_seconds", "predict_seconds"}
    assert {k: v for k, v in cli_metrics.items() if k not in timing} == \
        {k: v for k, v in run.metrics.items() if k not in timing}
    assert run.path == tmp_path / "api-run" and (run.path / "model.skops").is_file()

    done = runner.invoke(app, ["analyze", str(store.path), "--transferability", "--split", "all", "--max-memory", "4G",
                               "--out", str(tmp_path / "cli-analyze")])
    assert done.exit_code == 0, done.output
    result = featx.analyze(store, transferability=True, split="all", max_memory="4G", out=tmp_path / "api-analyze")
    cli_scores = json.loads((tmp_path / "cli-analyze" / "scores.json").read_text())
    api_scores = json.loads((result.path / "scores.json").read_text())
    for scores in (cli_scores, api_scores):
        for entry in scores.values():
            entry.pop("seconds")
    assert cli_scores == api_scores and api_scores[store.name]["logme"] is not None
    assert (result.path / "summary.md").read_text() == (tmp_path / "cli-analyze" / "summary.md").read_text() \
        .replace("cli-analyze", "api-analyze")
