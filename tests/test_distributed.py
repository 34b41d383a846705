"""hls.distributed: sharding, gathering in index order, and world size 1 vs 2 (two gloo processes) byte-identical."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from fakes import ddpm_config, tiny_unet
from hls import distributed, sampling
from hls.gaussian import Gaussian

N, BATCH, SHAPE = 7, 2, (3, 8, 8)


def _setup():
    """The same tiny model, DDPM scheduler (stochastic: per-step noise matters) and Gaussian in every process."""
    unet = tiny_unet()
    scheduler = sampling.make_scheduler("ddpm", ddpm_config())
    gaussian = Gaussian.fit(torch.rand(300, 192, generator=torch.Generator().manual_seed(3)) * 2 - 1)
    return unet, scheduler, gaussian


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    r, w = distributed.init("cpu")
    assert (r, w) == (rank, world)
    unet, scheduler, gaussian = _setup()
    indices = distributed.shard(N, r, w, block=BATCH)
    x = sampling.sample_seeded(unet, scheduler, [100 + i for i in indices], shape=SHAPE, steps=4, skip=1,
                               gaussian=gaussian, batch_size=BATCH)
    full = distributed.gather(x, indices, N)
    if r == 0:
        np.save(Path(out_dir) / f"world{w}.npy", full.numpy())
    else:
        assert full is None
    distributed.finish()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_world_1_and_2_give_identical_bytes(tmp_path):
    for world in (1, 2):
        mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    one, two = (tmp_path / "world1.npy").read_bytes(), (tmp_path / "world2.npy").read_bytes()
    assert one == two
    # and the gathered rows are the images of seeds 100..106 in index order
    unet, scheduler, gaussian = _setup()
    expected = sampling.sample_seeded(unet, scheduler, range(100, 100 + N), shape=SHAPE, steps=4, skip=1,
                                      gaussian=gaussian, batch_size=BATCH)
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "world2.npy")), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 7, 130])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("block", [1, 3, 64])
def test_shard_partitions_into_global_blocks(n, world, block):
    shards = [distributed.shard(n, rank, world, block=block) for rank in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    for s in shards:  # sample_seeded's batches of `block` rows are exactly the global blocks
        for start in range(0, len(s), block):
            batch = s[start:start + block]
            assert batch[0] % block == 0 and batch == list(range(batch[0], min(batch[0] + block, n)))
    for rank, s in enumerate(shards):  # rank r's first block is global block r
        assert s[:block] == list(range(rank * block, min((rank + 1) * block, n)))


def test_shard_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        distributed.shard(10, 2, 2)
    with pytest.raises(ValueError, match="block"):
        distributed.shard(10, 0, 2, block=0)


def test_without_torchrun(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.init() == (0, 1)
    assert not torch.distributed.is_initialized()
    assert distributed.local_device("cuda") == torch.device("cuda")
    x = torch.arange(12.0).reshape(6, 2)
    order = [4, 0, 5, 2, 1, 3]
    assert torch.equal(distributed.gather(x[order], order, 6), x)
    with pytest.raises(ValueError, match="exactly once"):
        distributed.gather(x[:5], [0, 1, 2, 3, 3], 6)
    distributed.finish()
