"""featx's exception hierarchy.

Every error a user can cause is a :class:`FeatxError`; the CLI prints its message on
one line and exits with its ``exit_code``: 2 bad input (:class:`InputError` and its
kinds), 3 weights, 4 store or a full disk, 5 store locked. Set ``FEATX_DEBUG=1`` for tracebacks.
"""


from collections.abc import Iterator


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and each exception it was raised from or during (``__cause__``, else ``__context__``), once each."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


class FeatxError(Exception):
    """Base class of the errors featx reports to users as one line."""

    exit_code = 1


class InputError(FeatxError):
    """The user asked for something featx cannot do with what it was given (exit 2)."""

    exit_code = 2


class OptionError(InputError):
    """A command-line option (or its keyword argument) has a value featx cannot use."""


class DataError(InputError):
    """The image folder, manifest or labels cannot be used."""


class BackboneError(InputError):
    """Unknown backbone, bad layer or pooling choice."""


class ClassifierError(InputError):
    """Unknown classifier, unusable labels or splits, mismatched stores for ``fit``/``predict``, or a model
    file ``predict`` will not load (untrusted types in a ``model.skops``; a pickle without ``--trust``)."""


class AnalysisError(InputError):
    """``analyze`` cannot compute what was asked (missing logits, missing optional package, bad options)."""


class WeightsError(FeatxError):
    """Pretrained weights cannot be found or loaded."""

    exit_code = 3


class StoreError(FeatxError):
    """A feature store is missing, incompatible, incomplete or not a store."""

    exit_code = 4


class DiskFullError(StoreError):
    """No space left, a quota exceeded or an I/O error while writing a store or an output (exit 4).

    What was committed before the failure is intact; the same command resumes once space is freed.
    """


class StoreLockedError(StoreError):
    """Another process is writing the same store."""

    exit_code = 5


class Stopped(FeatxError):
    """A signal (SIGUSR1 / SIGTERM, e.g. a batch system's time-limit warning) stopped a run between batches.

    Every finished batch is in the store; the same command resumes. Exit code 128 + the signal number.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
