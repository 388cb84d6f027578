"""featx's exception hierarchy.

Every error a user can cause is a :class:`FeatxError`; the CLI prints its message
on one line and exits with its ``exit_code``. Set ``FEATX_DEBUG=1`` for tracebacks.
"""


class FeatxError(Exception):
    """Base class of the errors featx reports to users as one line."""

    exit_code = 1


class OptionError(FeatxError):
    """A command-line option (or its keyword argument) has a value featx cannot use."""

    exit_code = 2


class DataError(FeatxError):
    """The image folder, manifest or labels cannot be used."""

    exit_code = 2


class BackboneError(FeatxError):
    """Unknown backbone, bad layer or pooling choice."""

    exit_code = 2


class WeightsError(FeatxError):
    """Pretrained weights cannot be found or loaded."""

    exit_code = 3


class ClassifierError(FeatxError):
    """Unknown classifier, unusable labels or splits, mismatched stores for ``fit``/``predict``."""

    exit_code = 2


class AnalysisError(FeatxError):
    """``analyze`` cannot compute what was asked (missing logits, missing optional package, bad options)."""

    exit_code = 2


class StoreError(FeatxError):
    """A feature store is missing, incompatible, incomplete or locked."""

    exit_code = 4


class StoreLockedError(StoreError):
    """Another process is writing the same store."""

    exit_code = 5
