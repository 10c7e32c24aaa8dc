"""Metric objects (torchmetrics style): ``update(...)`` batches of maps in memory, ``compute() -> dict``.

States are counts and sums reduced across processes with ``dist_reduce_fx="sum"``, so the same
object works in a single process, in a plain DDP loop and in Lightning.
"""
