"""`gemel kb build SOURCE --out DIR --ray`: a KB build's embedding as Ray tasks, one per shard.

The build's stages stay as they are (:mod:`gemel.kb.build`): the driver writes the entries, then shard ``i``
of ``n`` is embedded by one Ray task of one CPU, exactly as ``gemel kb build --shard i/n`` would on a machine
of its own (resumable after every batch, under the shard's lock), and the driver merges and indexes the
shards. A task whose worker dies is run again by Ray (``max_retries``) and resumes after the shard's last
finished batch. The tasks read and write ``DIR.partial``: on a cluster it must be on a filesystem every node
mounts at the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from gemel.distributed import RETRIES, import_ray, one_thread, user_error


def _embed(embed: Callable[[int, int], str], i: int, n: int, threads: int) -> str:
    """One Ray task: shard ``i`` of ``n``."""
    one_thread(threads)
    return embed(i, n)


def embed_shards(embed: Callable[[int, int], str], n: int, *, progress: Callable[[], int] | None = None,
                 total: int = 0, threads: int = 1, retries: int = RETRIES, show: bool = True) -> list[Any]:
    """Run ``embed(i, n)`` for every shard ``i`` of ``n`` as Ray tasks; their results in shard order. ``embed``
    must pickle. ``progress()`` (texts embedded so far, of ``total``) drives the bar, read every second.
    Needs a running Ray (:func:`gemel.distributed.session`)."""
    ray = import_ray()
    task = ray.remote(num_cpus=threads, max_retries=retries, retry_exceptions=False)(_embed)
    refs = [task.remote(embed, i, n, threads) for i in range(n)]
    bar = tqdm(total=total or None, desc=f"embedding ({n} Ray tasks)", unit="text", disable=not show)
    pending = list(refs)
    try:
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            if progress is not None:
                bar.update(progress() - bar.n)
        return ray.get(refs)
    except Exception as e:  # an error of the build (a KBError) raised in a task: its sentence
        if user_error(e) is e:
            raise
        raise user_error(e) from e
    finally:
        bar.close()
