"""DDPM training of a diffusers UNet2DModel (epsilon prediction) with AdamW, a cosine schedule and EMA weights."""

from __future__ import annotations

import copy

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from hls.errors import ArgumentError


def make_unet(image_size: int, channels: int, block_out_channels, layers_per_block: int, attention,
              norm_num_groups: int = 8) -> UNet2DModel:
    """A UNet2DModel with one resolution level per entry of ``block_out_channels``; ``attention[i]`` puts
    self-attention at level i (level 0 is full resolution)."""
    if not block_out_channels or not all(isinstance(c, int) and c > 0 for c in block_out_channels):
        raise ArgumentError("block_out_channels", block_out_channels, "must be a non-empty list of positive integers")
    if len(attention) != len(block_out_channels):
        raise ArgumentError("attention", attention, "needs one flag per level of block_out_channels")
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        norm_num_groups=norm_num_groups,
    )


def training_scheduler() -> DDPMScheduler:
    """The DDPM training schedule: 1000 linear betas 1e-4..0.02, epsilon prediction (as google/ddpm-cifar10-32)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         prediction_type="epsilon", clip_sample=True)


def train(unet: UNet2DModel, scheduler: DDPMScheduler, x: torch.Tensor, *, steps: int, batch_size: int, lr: float,
          warmup: int, ema_decay: float, seed: int, snapshot_steps=(), log_every: int = 50, device="cpu",
          progress: bool = True):
    """Train ``unet`` in place on ``x [N, C, H, W]`` (in [-1, 1]) for ``steps`` optimiser steps.

    Returns ``(ema_unet, log, snapshots)``: the EMA weights as a UNet, ``log`` a list of ``(step, epoch, loss)``
    with the loss averaged over each ``log_every`` steps, and ``snapshots`` ``{step: ema_unet}`` at
    ``snapshot_steps``. Batches, noise and timesteps come from one generator seeded with ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    unet.to(device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    lr_schedule = get_cosine_schedule_with_warmup(opt, warmup, steps)
    ema = EMAModel(unet.parameters(), decay=ema_decay)
    n = x.shape[0]
    order, pos = torch.randperm(n, generator=g), 0
    log, snapshots, running = [], {}, []

    def ema_copy():
        copied = copy.deepcopy(unet).eval()
        ema.copy_to(copied.parameters())
        return copied

    bar = tqdm(range(1, steps + 1), desc="train", disable=not progress)
    for step in bar:
        # next batch, reshuffling at each epoch boundary
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        x0 = x[order[pos:pos + batch_size]]
        pos += batch_size
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=g)
        x0, noise, t = x0.to(device), noise.to(device), t.to(device)
        # epsilon-prediction loss on the forward-noised batch
        loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_schedule.step()
        ema.step(unet.parameters())
        # bookkeeping: running loss, log rows, EMA snapshots
        running.append(loss.item())
        if step % log_every == 0 or step == steps:
            log.append((step, step * batch_size / n, sum(running) / len(running)))
            bar.set_postfix(loss=f"{log[-1][2]:.4f}")
            running = []
        if step in snapshot_steps:
            snapshots[step] = ema_copy()
    return ema_copy(), log, snapshots
