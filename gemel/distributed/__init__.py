"""Dataset-wide work on Ray: batch linking (:mod:`gemel.distributed.link`) and a KB build's embedding
(:mod:`gemel.distributed.kb`), with the answers one process gives.

Ray is an optional extra (``pip install .[ray]``). It is imported here only, lazily, when a command is given
``--ray``: the linker, the app and ``gemel`` itself never import it. These modules know Ray and nothing of the
command line or the KB's files: the work comes in as picklable functions (the CLI's line linker, the builder's
shard embedding), and Ray schedules it, moves its data and restarts or retries what a dead worker left undone
(``max_restarts``, ``max_task_retries``, ``max_retries``); nothing here schedules or retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from gemel.errors import GemelError

RETRIES = 3  # restarts of a dead actor and retries of its batch, or retries of a dead worker's task


class DistributedError(GemelError):
    """Ray is missing, or a distributed run cannot start (no cluster at the address given)."""


def import_ray() -> Any:
    """The ``ray`` module, or a sentence that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's own dependencies: pandas, pyarrow, fsspec)
    except ImportError as e:
        raise DistributedError("--ray needs Ray, an optional extra of gemel: pip install '.[ray]' (in the source "
                               f"folder), or pip install 'ray[data]==2.60.0' ({e})") from e
    return ray


@contextlib.contextmanager
def session(address: str | None = None, num_cpus: int | None = None, verbose: bool = False) -> Iterator[Any]:
    """Ray for one run: connected to the cluster at ``address`` (``auto``, ``HOST:6379``), or a local one started
    with ``num_cpus`` CPUs (all by default) and stopped at the end. A Ray this process already runs (a test's,
    a notebook's) is used as it is and left running. Yields the ``ray`` module."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    level = logging.INFO if verbose else logging.WARNING
    try:
        if address:
            ray.init(address=address, logging_level=level, log_to_driver=True)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, logging_level=level)
    except ConnectionError as e:
        raise DistributedError(f"no Ray cluster answers at {address!r} ({e}): start one (`ray start --head`, "
                               "`ray up docs/ray-cluster.yaml`) or leave ADDRESS out for a local Ray") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """The CPUs of the cluster Ray is connected to (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def one_thread(threads: int = 1) -> None:
    """Run torch on ``threads`` threads in this worker: one CPU per actor or task, as Ray reserves it."""
    import torch

    torch.set_num_threads(threads)


def user_error(e: BaseException) -> BaseException:
    """A gemel error raised on a worker, as itself (its sentence, not Ray's traceback text); else ``e``."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, GemelError) else e
