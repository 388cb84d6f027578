"""``featx.extract``: images -> frozen backbone -> HDF5 store, returned as a :class:`Store`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.splits import DEFAULT_RATIOS
from ..store.handle import Store

if TYPE_CHECKING:  # pragma: no cover
    from ..extraction.shard import Shard


def extract(backbone: str, data: str | Path, *, out: str | Path | None = None, weights: str = "imagenet",
            layer: str | None = None, pool: str | None = None, tta: str = "none", dtype: str = "float32",
            with_logits: bool = False, image_size: int | None = None, label_from_name: str | None = None,
            split_seed: int = 0, split_ratios: tuple[float, float, float] = DEFAULT_RATIOS, device: str = "auto",
            batch_size: int | None = None, workers: int | None = None, streams: int | None = None,
            runtime: str = "auto", precision: str = "auto", channels_last: bool = True, overwrite: bool = False, missing: str = "drop",
            retry_failed: bool = False, hash: bool = False, relocate: bool = False, shard: str | Shard | None = None,
            merge: bool = True, progress: bool = True, on_batch: Callable[[int], None] | None = None) -> Store:
    """Embed every image under ``data`` with a frozen backbone into an HDF5 store (``featx extract``).

    The same options, the same cache and the same store file as the command: re-running a finished
    extraction whose files did not change is a cache hit (no torch import, no model); new images are
    appended, changed ones re-extracted, and an interrupted run resumes.

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
    on_batch : callable, optional
        Called with k after the k-th batch is written.

    Returns
    -------
    Store
        The store written (a shard run: the shard's store, or the whole store once this shard completed
        and merged the set), opened on its committed rows;
        ``store.extraction`` says what this call did (``cache_hit``, ``n_new``, ``failures``, ``seconds``).

    Examples
    --------
    >>> store = featx.extract("efficientnet_lite0", "paintings/", with_logits=True)  # doctest: +SKIP
    >>> X, y = store.features(split="train"), store.labels(split="train")  # doctest: +SKIP
    """
    options = dict(locals())  # every parameter, passed on as it is
    from ..extraction.run import extract as run

    result = run(options.pop("backbone"), options.pop("data"), **options)
    store = Store(result.merged.path if getattr(result, "merged", None) is not None else result.path)
    store.extraction = result
    return store
