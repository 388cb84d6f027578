"""``featx.extract``: images -> frozen backbone -> HDF5 store, returned as a :class:`Store`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.splits import DEFAULT_RATIOS
from ..extraction.options import ExtractOptions, parameters_doc
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
{options}    on_batch : callable, optional
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
    from ..extraction.run import extract as run

    options = ExtractOptions(
        backbone, data, out=out, weights=weights, layer=layer, pool=pool, tta=tta, dtype=dtype, with_logits=with_logits,
        image_size=image_size, label_from_name=label_from_name, split_seed=split_seed, split_ratios=split_ratios,
        device=device, batch_size=batch_size, workers=workers, streams=streams, runtime=runtime, precision=precision,
        channels_last=channels_last, overwrite=overwrite, missing=missing, retry_failed=retry_failed, hash=hash,
        relocate=relocate, shard=shard, merge=merge, progress=progress)
    result = run(options, on_batch=on_batch)
    store = Store(result.merged.path if getattr(result, "merged", None) is not None else result.path)
    store.extraction = result
    return store


if extract.__doc__:  # None under python -OO
    extract.__doc__ = extract.__doc__.format(options=parameters_doc(ExtractOptions))
