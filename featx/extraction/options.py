"""The options of an extraction: declared, documented and checked once, here.

``featx extract`` and :func:`featx.extract` only build an :class:`ExtractOptions`; the stage
(:func:`featx.extraction.run.extract`) takes it. A bad value is one :class:`OptionError` naming the flag.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Collection
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from ..config import DTYPES, POOLS, PRECISIONS, RUNTIMES, TTAS, device_problem
from ..data.splits import DEFAULT_RATIOS, check_ratios
from ..errors import OptionError
from ..store.sync import MISSING_POLICIES
from .shard import Shard, parse_shard

CHOICES: dict[str, Collection[str]] = {"pool": POOLS, "tta": TTAS, "dtype": DTYPES, "runtime": RUNTIMES,
                                       "precision": PRECISIONS, "missing": MISSING_POLICIES}
"""The options with a fixed set of values (None, where allowed, means the default)."""


def flag(name: str) -> str:
    """The command-line flag of an option: ``with_logits`` -> ``--with-logits``."""
    return "--" + name.replace("_", "-")


def check_choice(name: str, value: str, choices: Collection[str]) -> None:
    """An :class:`OptionError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise OptionError(f"{flag(name)} {value!r}: use one of {', '.join(choices)}")


def parameters_doc(cls: type) -> str:
    """The entries of ``cls``'s numpy-style Parameters section, indented for a function's docstring."""
    section = inspect.cleandoc(cls.__doc__ or "").partition("Parameters\n----------\n")[2]
    return textwrap.indent(section.rstrip() + "\n", "    ")


@dataclass(frozen=True)
class SyncOptions:
    """How a run reconciles an existing store with the data (``featx extract`` flags)."""

    missing: str = "drop"  # rows whose file is gone: drop | keep
    retry_failed: bool = False  # try failed images again even if their file did not change
    hash: bool = False  # keep a content hash per row (a touched but identical file is not re-extracted)
    relocate: bool = False  # accept a store made from another data root (the same ids under a new mount)

    def __post_init__(self):
        check_choice("missing", self.missing, MISSING_POLICIES)


@dataclass(frozen=True)
class ExtractOptions:
    """Everything ``featx extract`` / :func:`featx.extract` is asked, checked on construction.

    Parameters
    ----------
    backbone : str
        A name from :func:`featx.list_backbones`, or ``timm:<name>`` / ``tv:<name>``.
    data : str or Path
        A class-per-folder directory, optionally under ``train/ val/ test/``, or a CSV manifest
        ``path,label[,split]``.
    out : str or Path, optional
        Store path; default ``cache/<dataset>--<backbone>--<layer>-<pool>--<hash>.h5`` (``$FEATX_CACHE``).
    weights : str, default "imagenet"
        ``imagenet``, ``none`` (random init, seeded) or the path of a local state dict / checkpoint.
    layer : str, optional
        Tap point (see ``featx backbones``) or ``module:<path>``; default: the backbone's.
    pool : {"avg", "max", "gem", "flatten", "spp", "none"}, optional
        Pooling of a feature map; default: the layer's.
    tta : {"none", "hflip"}, default "none"
        ``hflip`` stores the mean of the features of each image and its mirror.
    dtype : {"float32", "float16"}, default "float32"
        Stored feature dtype.
    with_logits : bool, default False
        Also store the source model's ImageNet logits (LEEP, NCE, task overlap).
    image_size : int, optional
        Override the input size (the crop ratio is kept).
    label_from_name : str, optional
        Regex whose group 1 in the file name is the label, e.g. ``'^(.+?)_'``.
    split_seed : int, default 0
        Seed of the hash split used when the data has none.
    split_ratios : tuple of 3 floats, default (0.8, 0.1, 0.1)
        train, val, test fractions of that split.
    device : str, default "auto"
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    batch_size, workers, streams : int, optional
        Images per batch (32 with OpenVINO, 10 with PyTorch on CPU, 64 on CUDA), decoding threads (a quarter
        of the cores, at least 2, on CPU; all but one beside a GPU), batches in flight at once (the runtime's choice per machine).
    runtime : {"auto", "torch", "openvino"}, default "auto"
        ``auto``: OpenVINO on CPU (the network is converted once and cached under ``cache/models``),
        PyTorch on a GPU; an existing store keeps the runtime it was made with.
    precision : {"auto", "fp32", "bf16", "fp16"}, default "auto"
        Numeric path, part of the fingerprint. ``auto``: an existing store's precision, else bf16 where
        the hardware has it natively (a CPU with AVX-512 BF16 or AMX, a CUDA GPU; fp16 on older GPUs)
        and fp32 elsewhere.
    channels_last : bool, default True
        channels_last memory layout.
    overwrite : bool, default False
        Build the store afresh beside the old one, replacing it at the end.
    missing : {"drop", "keep"}, default "drop"
        Rows whose image file is gone.
    retry_failed : bool, default False
        Try unreadable images again although their file did not change.
    hash : bool, default False
        Keep a content hash per row (a touched but identical file is not re-extracted).
    relocate : bool, default False
        Accept a store made from another data root and point it at ``data``.
    shard : str or Shard, optional
        ``"i/n"`` extracts the i-th of n blocks of the ids into a shard store beside the store;
        ``"auto"`` takes it from a SLURM array task or a torchrun rank.
    merge : bool, default True
        With ``shard``, the shard that completes the set merges all of them into the store.
    progress : bool, default True
        A ``tqdm.auto`` progress bar (a widget in Jupyter, text in a terminal).
    """

    backbone: str
    data: str | Path
    _: KW_ONLY
    out: str | Path | None = None
    weights: str = "imagenet"
    layer: str | None = None
    pool: str | None = None
    tta: str = "none"
    dtype: str = "float32"
    with_logits: bool = False
    image_size: int | None = None
    label_from_name: str | None = None
    split_seed: int = 0
    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    streams: int | None = None
    runtime: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    overwrite: bool = False
    missing: str = "drop"
    retry_failed: bool = False
    hash: bool = False
    relocate: bool = False
    shard: str | Shard | None = None
    merge: bool = True
    progress: bool = True

    def __post_init__(self):
        for name, choices in CHOICES.items():
            if getattr(self, name) is not None:
                check_choice(name, getattr(self, name), choices)
        problem = device_problem(self.device)
        if problem:
            raise OptionError(f"--device {problem}")
        object.__setattr__(self, "split_ratios", check_ratios(self.split_ratios))
        if isinstance(self.shard, str) and self.shard not in ("auto", "none"):
            parse_shard(self.shard)

    @property
    def sync(self) -> SyncOptions:
        """How this run reconciles an existing store with the data."""
        return SyncOptions(self.missing, self.retry_failed, self.hash, self.relocate)
