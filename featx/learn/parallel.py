"""Where scikit-learn's parallel work runs: local joblib workers, or an existing dask.distributed cluster.

``featx fit --search --dask-scheduler tcp://HOST:8786`` sends the grid search's fits to the
cluster's workers through joblib's dask backend; featx starts no cluster itself.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..errors import OptionError


@contextmanager
def joblib_backend(dask_scheduler: str | None = None, *, timeout: float = 20.0) -> Iterator[None]:
    """Run the joblib work inside on the dask cluster at ``dask_scheduler`` (None: locally, unchanged)."""
    if not dask_scheduler:
        yield
        return
    try:
        import joblib
        from dask.distributed import Client
    except ImportError:
        raise OptionError("--dask-scheduler needs dask.distributed: pip install 'featx[dask]'") from None
    try:
        client = Client(dask_scheduler, timeout=timeout)
    except ValueError as exc:  # dask's "unknown address scheme", "invalid address"
        raise OptionError(f"--dask-scheduler {dask_scheduler!r}: not a scheduler address ({exc}); use "
                          "tcp://HOST:8786") from None
    except (OSError, TimeoutError) as exc:
        raise OptionError(f"--dask-scheduler {dask_scheduler}: cannot connect ({' '.join(str(exc).split())[:200]}); "
                          "start the scheduler (`dask scheduler`) or check the address") from None
    try:
        with joblib.parallel_backend("dask"):
            yield
    finally:
        client.close()
