"""The per-process half of tests/test_metrics_objects.py::test_two_processes_equal_one (a module of its
own, so that each spawned process imports only what it needs)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from bench.metrics import LocalizationError, MaxBoxAcc, MaxBoxAccV2


def batches(n: int, size: int) -> list[slice]:
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def ddp_worker(rank: int, world: int, init: str, payload: bytes, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    items = pickle.loads(payload)
    mine = slice(rank, None, world)  # DistributedSampler(shuffle=False) order
    loc = LocalizationError("ilsvrc_loc", class_ids=items["class_ids"])
    box = MaxBoxAccV2(step=0.01)
    box_h = MaxBoxAcc(step=0.01, rules="harness")
    lonely = LocalizationError("ilsvrc_loc")  # rank 1 adds nothing
    for sl in batches(len(items["ids"][mine]), 4):
        take = lambda key: items[key][mine][sl]  # noqa: E731
        loc.update(take("maps"), take("labels"), take("boxes"), take("sizes"), classes=take("classes"), image_ids=take("ids"))
        gt = [m[int(np.flatnonzero(c == label)[0])] for m, c, label in zip(take("maps"), take("classes"), take("labels"))]
        box.update(gt, take("boxes"), take("sizes"))
        box_h.update(gt, take("boxes"), take("sizes"))
    if rank == 0:
        lonely.update(items["maps"][:3], items["labels"][:3], items["boxes"][:3], items["sizes"][:3], classes=items["classes"][:3])
    result = {"loc": loc.compute(), "box": box.compute(), "box_h": box_h.compute(), "lonely": lonely.compute(),
              "records": loc.gathered_records()}  # fmt: skip
    if rank == 0:
        Path(out).write_bytes(pickle.dumps(result))
    torch.distributed.destroy_process_group()
