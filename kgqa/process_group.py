"""This process's place among `torchrun`'s: its rank and the world's size (from the launcher's
RANK and WORLD_SIZE), and the torch process group it joins while the processes must talk and
leaves before it ends.

Leaving is not optional: a gloo group still alive when Python finalizes the interpreter can abort
the process (SIGABRT, "terminate called without an active exception"), which `torchrun` reports
as the whole run failed after every answer or checkpoint was written.
"""
from __future__ import annotations

import os

_joined_here = False  # whether join() made the process group (one a caller made is theirs to end)


def shard() -> tuple[int, int]:
    """(rank, world size) of this process under `torchrun`, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def join(backend: str) -> None:
    """Join the process group of `torchrun`'s processes (`backend`: gloo between CPU processes,
    nccl between GPUs), unless this process already has."""
    import torch.distributed

    global _joined_here
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
        _joined_here = True


def leave() -> None:
    """Wait for every process to reach this point, then destroy the process group `join` made (its
    threads stopped while the interpreter is whole); a group the caller made is left to the caller."""
    import torch.distributed

    global _joined_here
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        if _joined_here:
            torch.distributed.destroy_process_group()
            _joined_here = False
