"""This process's place among `torchrun`'s: its rank and the world's size (from the launcher's
RANK and WORLD_SIZE), and the torch process group it joins while the processes must talk and
leaves before it ends.

Leaving is not optional: a gloo group still alive when Python finalizes the interpreter can abort
the process (SIGABRT, "terminate called without an active exception", one run in a few), which
`torchrun` reports as the whole run failed after every answer or checkpoint was written.
"""
from __future__ import annotations

import os


def shard() -> tuple[int, int]:
    """(rank, world size) of this process under `torchrun`, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def join(backend: str) -> None:
    """Join the process group of `torchrun`'s processes (`backend`: gloo between CPU processes,
    nccl between GPUs), unless this process already has."""
    import torch.distributed

    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)


def leave() -> None:
    """Wait for every process to reach this point, then destroy the process group (its threads
    stopped while the interpreter is whole); nothing where no group was joined."""
    import torch.distributed

    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
