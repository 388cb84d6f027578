"""The memory budget of analyze: sizes, the default budget and the guarded score call."""

from __future__ import annotations

import warnings

import pytest

from featx.analysis import budget
from featx.analysis.transfer import ScoreWarning
from featx.errors import OptionError


@pytest.mark.parametrize("text,size", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29),
                                       ("2GB", 2 * 10**9), ("3000000", 3_000_000), (" 2 g ", 2 * 2**30)])
def test_parse_size(text, size):
    assert budget.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "4X", "", "-1G", "100K", "1e9"])
def test_parse_size_refuses_with_the_flag_named(text):
    with pytest.raises(OptionError, match="--max-memory"):
        budget.parse_size(text)


def test_default_budget_is_a_share_of_available_memory(monkeypatch):
    assert budget.default_budget() > 0
    monkeypatch.setattr(budget, "available_bytes", lambda: 8 * 2**30)
    assert budget.default_budget() == 4 * 2**30
    monkeypatch.setattr(budget, "available_bytes", lambda: None)
    assert budget.default_budget() == budget.FALLBACK_BUDGET


def test_guarded_turns_failures_warnings_and_nan_into_notes():
    log = budget.ScoreLog()
    assert log.guarded("ok", lambda: 1.5) == 1.5

    def warns():
        warnings.warn("stopped early", ScoreWarning)
        warnings.warn("unrelated", DeprecationWarning)
        return 2.0

    assert log.guarded("w", warns) == 2.0
    assert log.guarded("bad", lambda: 1 / 0) is None
    assert log.guarded("nan", lambda: float("nan")) is None
    assert log.errors["bad"] == "ZeroDivisionError: division by zero" and "nan" in log.errors["nan"]
    assert log.notes == ["w: stopped early", "bad failed and is null (ZeroDivisionError: division by zero)",
                         "nan is null: the computation gave nan"]
    assert set(log.seconds) == {"ok", "w", "bad", "nan"}
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not a score failure
        log.guarded("stop", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
