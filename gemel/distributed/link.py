"""`gemel link --input ... --ray`: a batch as a Ray dataset, linked by actors that each load the linker once.

The input lines become a dataset (``ray.data.from_items``: the driver holds the file, Ray moves the lines);
``map_batches`` with a callable class runs an actor pool of ``actors`` actors, one CPU and one torch thread
each; every actor calls ``load()`` once, then ``link(linker, line, n)`` per line, which returns the output line.
The results stream back to the driver in input order (``preserve_order``), so the output written so far is
always a prefix of the whole, as in one process. A worker that dies is restarted by Ray and its batch run
again (``max_restarts``, ``max_task_retries``), up to ``retries`` times: a line that kills every worker it
reaches stops the run with Ray's error instead of restarting for ever (Ray Data's default).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gemel.distributed import RETRIES, import_ray, one_thread, user_error

MAX_ROWS_PER_BLOCK = 16  # lines per Ray task at most: a block lost with its worker costs at most this many links


class LinkActor:
    """One Ray Data actor: a linker loaded once, then one output line per input line."""

    def __init__(self, load: Callable[[], Any], link: Callable[[Any, str, int], str], threads: int) -> None:
        one_thread(threads)
        self.linker = load()
        self.link = link

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out = [self.link(self.linker, str(line), int(n)) for n, line in zip(batch["n"], batch["line"])]
        return {"n": batch["n"].tolist(), "out": out}


def rows_per_block(items: int, actors: int) -> int:
    """Lines per block: about 8 blocks per actor, so the last ones end together, and at most 16."""
    return max(1, min(MAX_ROWS_PER_BLOCK, items // (8 * actors)))


def link_cases(cases: Sequence[tuple[int, str]], load: Callable[[], Any], link: Callable[[Any, str, int], str], *,
               actors: int, threads: int = 1, retries: int = RETRIES) -> Iterator[str]:
    """``link(linker, line, n)`` for every ``(n, line)`` of ``cases``, in their order, computed by ``actors`` Ray
    actors that each hold one ``load()``-ed linker. ``load`` and ``link`` must pickle (module functions, or
    ``functools.partial`` of them). Needs a running Ray (:func:`gemel.distributed.session`)."""
    ray = import_ray()
    from ray.util.annotations import RayDeprecationWarning

    if not cases:
        return
    block = rows_per_block(len(cases), actors)
    ds = ray.data.from_items([{"n": n, "line": line} for n, line in cases],
                             override_num_blocks=-(-len(cases) // block))
    with warnings.catch_warnings():  # Ray 2.60 bounds an actor's restarts only through these deprecated arguments
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", RayDeprecationWarning)
        ds = ds.map_batches(LinkActor, fn_constructor_args=(load, link, threads), batch_size=None,
                            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads,
                            max_restarts=retries, max_task_retries=retries)  # Ray Data's own: unbounded
    ds.context.execution_options.preserve_order = True  # the output in input order, whatever ends first
    ds.context.enable_progress_bars = False  # the caller shows one bar, in lines
    ds.context.print_on_execution_start = False
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield from (str(line) for line in batch["out"])
    except Exception as e:  # a linker that cannot load on the workers: its sentence, not Ray's traceback
        if user_error(e) is e:
            raise
        raise user_error(e) from e
