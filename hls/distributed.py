"""Sharding a sample set over ``torchrun`` processes and gathering it in index order on rank 0.

Each image depends only on its own seed (``hls.sampling.sample_seeded``), and ``shard`` hands out whole batches of
consecutive indices, so every batch the UNet sees is the same at any world size: world size 1 and N give identical
bytes (on the same kind of device). Usage in a stage script::

    rank, world = distributed.init(device)
    indices = distributed.shard(n, rank, world, block=batch_size)
    x = sampling.sample_seeded(unet, scheduler, [seed + i for i in indices], ..., batch_size=batch_size,
                               device=distributed.local_device(device))
    x = distributed.gather(x, indices, n)  # [n, ...] on rank 0, None elsewhere
    distributed.finish()

Launched as ``torchrun --nproc-per-node 8 stages/<stage>.py ...``; without torchrun the same code runs as world 1.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def _launched() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK; 0 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def local_device(device) -> torch.device:
    """``device`` with a CUDA device pinned to this process's GPU (``cuda:LOCAL_RANK``) under torchrun."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and _launched():
        return torch.device("cuda", local_rank())
    return device


def init(device=None) -> tuple[int, int]:
    """Join torchrun's process group; return ``(rank, world_size)``, or ``(0, 1)`` without one when not launched.

    Backend: nccl when ``device`` is CUDA (default: CUDA when available), gloo otherwise.
    """
    if not _launched():
        return 0, 1
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def shard(n: int, rank: int, world: int, block: int = 64) -> list[int]:
    """The image indices of ``range(n)`` this rank samples: blocks of ``block`` consecutive indices, dealt round-robin.

    Pass the sampler's batch size as ``block`` so that each batch is one global block at any world size.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard: need 0 <= rank < world, got rank {rank}, world {world}")
    if block < 1:
        raise ValueError(f"shard: block must be >= 1, got {block}")
    return [i for start in range(rank * block, n, world * block) for i in range(start, min(start + block, n))]


def _assemble(parts, index_parts, n: int) -> torch.Tensor:
    """Scatter row blocks ``parts`` to their ``index_parts`` in a new ``[n, ...]`` tensor; every index exactly once."""
    indices = torch.cat(index_parts)
    if len(indices) != n or not torch.equal(indices.sort().values, torch.arange(n)):
        raise ValueError(f"gather: the ranks' indices must cover range({n}) exactly once")
    x = torch.cat(parts)
    out = torch.empty((n, *x.shape[1:]), dtype=x.dtype)
    out[indices] = x
    return out


def gather(x_local: torch.Tensor, indices, n: int) -> torch.Tensor | None:
    """Every rank's rows ``x_local [len(indices), ...]`` -> ``[n, ...]`` on CPU in index order on rank 0, else None.

    Without a process group this just puts the rows in index order.
    """
    indices = torch.as_tensor(list(indices), dtype=torch.long)
    if len(indices) != len(x_local):
        raise ValueError(f"gather: {len(x_local)} rows but {len(indices)} indices")
    x_local = x_local.detach().cpu()
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return _assemble([x_local], [indices], n)
    rank, world = dist.get_rank(), dist.get_world_size()
    comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    # pad every rank's rows to the largest count, so that one collective gather moves them all
    count = torch.tensor([len(indices)], device=comm)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    m = int(count)
    rows = torch.zeros((m, *x_local.shape[1:]), dtype=x_local.dtype, device=comm)
    rows[:len(x_local)] = x_local.to(comm)
    idx = torch.full((m,), -1, dtype=torch.long, device=comm)
    idx[:len(indices)] = indices.to(comm)
    all_rows = [torch.empty_like(rows) for _ in range(world)] if rank == 0 else None
    all_idx = [torch.empty_like(idx) for _ in range(world)] if rank == 0 else None
    dist.gather(rows, all_rows, dst=0)
    dist.gather(idx, all_idx, dst=0)
    if rank != 0:
        return None
    keep = [i.cpu() >= 0 for i in all_idx]
    return _assemble([r.cpu()[k] for r, k in zip(all_rows, keep)], [i.cpu()[k] for i, k in zip(all_idx, keep)], n)


def finish() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
