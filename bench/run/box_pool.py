"""The pool that turns a batch's CAMs into boxes and records while the next batch runs.

:func:`make_box_pool` gives the engine one of three strategies (``RunConfig.box_workers``):

* ``inline`` (0 workers): per-image work in the main thread (the CPU default: the network
  already uses every core there);
* ``thread``: a thread pool (explicit ``--box-workers N`` on the CPU);
* ``process``: a process pool (the GPU default, one per core): box extraction holds the GIL for
  most of its time, so on a GPU machine only processes keep up with the network. The jobs are
  ``functools.partial`` objects of module-level functions; :func:`submit_job` moves their
  tensor arguments to the CPU first (the low-resolution CAMs: kilobytes per image), so workers
  never touch CUDA, and the upsampling to the original size happens in the worker.

Workers are started with ``spawn`` and one intra-op thread each
(:func:`bench.run.parallel.map_in_processes` uses the same set-up).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import Any

import torch

from bench.run.parallel import default_workers, init_worker

__all__ = ["box_pool_kind", "make_box_pool", "submit_job"]


def box_pool_kind(device: str, box_workers: int | None) -> tuple[str, int]:
    """``(kind, workers)`` for a run on ``device``: None = auto (processes on every core on CUDA,
    inline on the CPU); on CUDA an explicit N > 0 means N processes, on the CPU N threads."""
    on_gpu = str(device).startswith("cuda")
    if box_workers is None:
        return ("process", default_workers()) if on_gpu else ("inline", 0)
    if box_workers < 0:
        raise ValueError(f"box workers must be >= 0, got {box_workers}")
    if box_workers == 0:
        return "inline", 0
    return ("process" if on_gpu else "thread"), box_workers


def make_box_pool(kind: str, workers: int) -> Executor | None:
    """The executor for ``kind`` (None for 'inline')."""
    if kind == "inline":
        return None
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers)
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker)
    raise ValueError(f"box pool kind must be inline, thread or process, got {kind!r}")


def _cpu(value: Any) -> Any:
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def submit_job(pool: Executor | None, job: Callable[[], Any]) -> Future | Any:
    """Run ``job`` now (no pool) or submit it; for a process pool, tensor arguments go to the CPU."""
    if pool is None:
        return job()
    if isinstance(pool, ProcessPoolExecutor) and isinstance(job, partial):
        job = partial(job.func, *(_cpu(a) for a in job.args), **{k: _cpu(v) for k, v in job.keywords.items()})
    return pool.submit(job)
