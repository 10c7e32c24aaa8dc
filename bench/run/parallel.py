"""Streaming work over processes: ``fn(item)`` for a long stream of items on all cores, in order,
with flat memory and a progress bar.

Used for work that holds the GIL (threshold sweeps, OpenCV-exact box rules) over tens of thousands
of saved maps: `bench sweep --workers N` and the scoring of saved-map folders.

:func:`map_in_processes` yields ``fn(item)`` for every item, in input order:

* ``workers <= 1`` runs inline in this process (no pool, the same results), with torch limited
  to one intra-op thread meanwhile as in a worker (for per-map tensors, thread start-up costs
  far more than it saves: 14x14 -> 224x224 upsampling took 15 ms with 2 threads vs 0.2 ms
  with 1 on the shared 2-core machine);
* otherwise items are taken from the iterable lazily, grouped in chunks of ``chunksize`` (one
  pickling round trip per chunk), and at most ``max_in_flight`` chunks (default ``2 * workers``)
  are queued at a time; the oldest chunk's results are yielded as soon as it is done. Memory
  therefore holds at most ``max_in_flight * chunksize`` items and results, whatever the length
  of the stream: feed it a generator (e.g. one that reads a shard at a time).
* Worker processes are started with ``spawn`` (safe after torch or OpenMP threads exist in the
  parent) and use one intra-op thread each (torch, OpenMP, BLAS), so N workers use N cores.
  ``fn`` and the items must be picklable: a module-level function, or a ``functools.partial``
  of one with picklable arguments.
* An exception raised by ``fn`` in a worker is raised again here (the worker's traceback is
  its ``__cause__``); queued chunks are cancelled.
* The tqdm bar counts items (``unit``) and shows their rate (e.g. maps/s).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

from tqdm import tqdm

__all__ = ["default_workers", "init_worker", "map_in_processes"]

T = TypeVar("T")
R = TypeVar("R")

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def init_worker() -> None:
    """One intra-op thread per worker process (set before the work's modules are imported)."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def _run_chunk(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [fn(item) for item in chunk]


def map_in_processes(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    progress_desc: str | None = None,
    *,
    chunksize: int = 32,
    max_in_flight: int | None = None,
    total: int | None = None,
    unit: str = "map",
    mp_context: str = "spawn",
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, computed by ``workers`` processes.

    Args:
        fn: picklable function of one item.
        items: any iterable, consumed lazily (a generator keeps memory flat).
        workers: number of worker processes; ``<= 1`` computes inline in this process.
        progress_desc: the progress bar's label; None shows no bar.
        chunksize: items sent to a worker at once (>= 1).
        max_in_flight: chunks queued at most (default ``2 * workers``); bounds memory.
        total: number of items, for the bar's percentage and ETA (optional).
        unit: the bar's unit (its rate reads ``<unit>/s``).
        mp_context: multiprocessing start method ('spawn', 'forkserver' or 'fork').
    """
    if chunksize < 1:
        raise ValueError(f"chunksize must be >= 1, got {chunksize}")
    limit = max(1, max_in_flight if max_in_flight is not None else 2 * workers)
    bar = tqdm(total=total, desc=progress_desc, unit=unit, disable=progress_desc is None, smoothing=0.05)
    try:
        if workers <= 1:
            torch = sys.modules.get("torch")
            for item in items:
                # One torch thread while an item is computed, as in a worker (per-item tensors are
                # tiny); restored before the yield, so the caller's code never runs with it.
                threads = torch.get_num_threads() if torch is not None else None
                try:
                    if torch is not None:
                        torch.set_num_threads(1)
                    result = fn(item)
                finally:
                    if torch is not None and threads is not None:
                        torch.set_num_threads(threads)
                bar.update(1)
                yield result
            return
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(mp_context), initializer=init_worker
        )
        in_flight: deque[Future[list[R]]] = deque()
        try:
            stream = iter(items)
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < limit:
                    chunk = list(islice(stream, chunksize))
                    if not chunk:
                        exhausted = True
                        break
                    in_flight.append(pool.submit(_run_chunk, fn, chunk))
                if not in_flight:
                    break
                for result in in_flight.popleft().result():
                    bar.update(1)
                    yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
