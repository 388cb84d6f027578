"""The transferability scores, one :class:`Score` record each, registered by :func:`register_score` on the
score function (in the style of timm's ``register_model``).

The built-in scores register themselves in :mod:`featx.analysis.transfer`, which re-exports the functions
below (like ``timm.models`` re-exports ``list_models``): read them from there, so the scores are registered.
Adding a score is its function and its decorator there. Everything else reads the registry: the scoring loop
and its memory budget, rankings and correlations, scores.json, scores.csv, summary.md and the terminal table.
Key order is registration order, cross-fitted variants last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

NEEDS = ("probs", "top1", "features")
"""What a score is computed from: the source model's probabilities (softmax of the store's logits), its
top-1 label (their argmax), or the features. The first two are the source-model scores."""


def no_kwargs(**_) -> dict:
    return {}


@dataclass(frozen=True)
class Score:
    """One score: ``fn(input, y, **kwargs(seed=, max_rows=, k=))`` with ``input`` as ``needs`` says.

    ``peak(n, d, c, z=, max_rows=)`` estimates its memory (bytes) from the shapes; every feature score has one
    (a source score without one is too small to budget).
    ``ranked``: it ranks stores and is correlated with accuracy. ``cv``: (name, kwargs) of its cross-fitted
    variant, reported after every score and ranked. ``sample``: it runs on a stratified sub-sample of at most
    ``--max-rows`` rows. ``caveat(n, max_rows)``: a note about the rows it used, or None. ``estimate``: it
    returns an :class:`~featx.analysis.transfer.Estimate` (``<name>_se`` and ``<name>_baseline`` beside it).
    """

    name: str
    fn: Callable
    needs: str
    ranked: bool = True
    peak: Callable[..., int] | None = None
    kwargs: Callable[..., dict] = no_kwargs
    cv: tuple[str, Callable[..., dict]] | None = None
    sample: bool = False
    caveat: Callable[[int, int], str | None] | None = None
    estimate: bool = False

    @property
    def source(self) -> bool:
        """Needs the source model's logits."""
        return self.needs != "features"

    def variants(self) -> list[tuple[str, Callable[..., dict]]]:
        """(key, kwargs) of the score and of its cross-fitted variant, in the order they are computed."""
        return [(self.name, self.kwargs), *([self.cv] if self.cv else [])]


SCORES: dict[str, Score] = {}
"""Every registered score by name, in registration order."""


def register_score(name: str, *, needs: str, **facts) -> Callable[[Callable], Callable]:
    """Decorator: register the decorated function as the score ``name`` (``facts``: the fields of :class:`Score`)."""
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {', '.join(NEEDS)}, not {needs!r}")
    if needs == "features" and facts.get("peak") is None:
        raise ValueError(f"feature score {name!r} needs a peak-memory model (peak=) for the budget")

    def add(fn: Callable) -> Callable:
        if name in SCORES:
            raise ValueError(f"score {name!r} is registered twice")
        SCORES[name] = Score(name, fn, needs, **facts)
        return fn

    return add


def scores(*, source: bool | None = None) -> list[Score]:
    """The registered scores in order; ``source``: only the source-model (True) or feature (False) ones."""
    return [s for s in SCORES.values() if source is None or s.source == source]


def score_keys(*, source: bool | None = None) -> tuple[str, ...]:
    """Every key in scores.json, scores.csv and the tables: each score, then the cross-fitted variants."""
    chosen = scores(source=source)
    return tuple(s.name for s in chosen) + tuple(s.cv[0] for s in chosen if s.cv)


def ranked_keys() -> tuple[str, ...]:
    """The keys that rank stores and are correlated with accuracy: a cross-fitted variant in the place of its
    score (the in-sample value, inflated by many source labels, stays in scores.json unranked)."""
    return tuple(key for s in scores() for key in ([s.name] if s.ranked else []) + ([s.cv[0]] if s.cv else []))


def estimate_keys() -> tuple[str, ...]:
    """The standard error and baseline keys of the scores that return an Estimate."""
    return tuple(f"{s.name}_{part}" for s in scores() if s.estimate for part in ("se", "baseline"))


def peak_bytes(name: str, n: int, d: int, c: int, *, z: int = 1000, max_rows: int = 20000) -> int:
    """Estimated peak memory (bytes) of score ``name`` on top of the n x d features already loaded, from the
    shapes alone (n rows, d dims, c classes, z source labels). Deliberately generous: an estimate that is too
    low is a crash, one that is too high only a reduced or skipped score."""
    score = SCORES.get(name)
    if score is None or score.peak is None:
        raise KeyError(name)
    return int(score.peak(n, d, c, z=z, max_rows=max_rows))
