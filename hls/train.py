"""DDPM training of a diffusers UNet2DModel (epsilon prediction) with AdamW, a cosine schedule and EMA weights.

Training resumes: every ``save_every`` steps ``train`` hands its whole state to a ``save`` callback, and
``train(..., state=that)`` continues from it to the same bits as a run never stopped.
"""

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


def diffusion_loss(unet, scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor,
                   t: torch.Tensor) -> torch.Tensor:
    """The float32 epsilon-prediction MSE of ``unet`` on ``x0 [B, C, H, W]`` noised with ``noise [B, C, H, W]`` at
    timesteps ``t [B]`` (float32 also when the UNet runs under autocast)."""
    eps = unet(scheduler.add_noise(x0, noise, t), t).sample
    return torch.nn.functional.mse_loss(eps.float(), noise)


def optimiser_step(unet, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backpropagate ``loss``, clip the gradient norm to 1 and step ``opt``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()


def _ema_unet(unet: UNet2DModel, ema: EMAModel) -> UNet2DModel:
    """A copy of ``unet`` in eval mode holding the EMA weights."""
    copied = copy.deepcopy(unet).eval()
    ema.copy_to(copied.parameters())
    return copied


def _resume(state: dict, unet, opt, lr_schedule, ema: EMAModel, generator: torch.Generator, device) -> dict:
    """Load ``state`` (from a ``save`` callback) into the objects of a fresh run; return its loop variables."""
    unet.load_state_dict(state["unet"])
    opt.load_state_dict(state["opt"])
    lr_schedule.load_state_dict(state["lr_schedule"])
    ema.load_state_dict(state["ema"])
    ema.to(device)
    generator.set_state(state["generator"])
    snapshots = {}
    for step, weights in state["snapshots"].items():
        snapshots[step] = copy.deepcopy(unet).half().eval()
        snapshots[step].load_state_dict(weights)
    return {key: state[key] for key in ("step", "order", "pos", "log", "running")} | {"snapshots": snapshots}


def train(unet: UNet2DModel, scheduler: DDPMScheduler, x: torch.Tensor, *, steps: int, batch_size: int, lr: float,
          warmup: int, ema_decay: float, seed: int, snapshot_steps=(), log_every: int = 50, state: dict | None = None,
          save_every: int = 200, save=None, device="cpu", progress: bool = True):
    """Train ``unet`` in place on ``x [N, C, H, W]`` (in [-1, 1]) for ``steps`` optimiser steps.

    Returns ``(ema_unet, log, snapshots)``: the EMA weights as a float32 UNet, ``log`` a list of ``(step, epoch,
    loss)`` with the loss averaged over each ``log_every`` steps, and ``snapshots`` ``{step: ema_unet in float16}`` at
    ``snapshot_steps``. Batches, noise and timesteps come from one generator seeded with ``seed``.

    Every ``save_every`` steps and after the last, ``save(state)`` gets a copy of everything training needs to go on
    (a dict of tensors and plain values, for ``torch.save``); ``train`` called again with the same arguments and
    ``state=state`` continues from it to the same bits (on the same machine).
    """
    unet.to(device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    lr_schedule = get_cosine_schedule_with_warmup(opt, warmup, steps)
    ema = EMAModel(unet.parameters(), decay=ema_decay)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    run = {"step": 0, "order": torch.randperm(n, generator=g), "pos": 0, "log": [], "running": [], "snapshots": {}}
    if state is not None:
        run = _resume(state, unet, opt, lr_schedule, ema, g, device)

    def state_now() -> dict:
        return copy.deepcopy(run | {
            "unet": unet.state_dict(), "opt": opt.state_dict(), "lr_schedule": lr_schedule.state_dict(),
            "ema": ema.state_dict(), "generator": g.get_state(),
            "snapshots": {step: snap.state_dict() for step, snap in run["snapshots"].items()}})

    bar = tqdm(range(run["step"] + 1, steps + 1), initial=run["step"], total=steps, desc="train",
               disable=not progress)
    for step in bar:
        # next batch, reshuffling at each epoch boundary
        if run["pos"] + batch_size > n:
            run["order"], run["pos"] = torch.randperm(n, generator=g), 0
        x0 = x[run["order"][run["pos"]:run["pos"] + batch_size]]
        run["pos"] += batch_size
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=g)
        # one optimiser step on the epsilon-prediction loss of the forward-noised batch, then the EMA
        loss = diffusion_loss(unet, scheduler, x0.to(device), noise.to(device), t.to(device))
        optimiser_step(unet, opt, loss)
        lr_schedule.step()
        ema.step(unet.parameters())
        # bookkeeping: running loss, log rows, EMA snapshots, the resumable state
        run["step"] = step
        run["running"].append(loss.item())
        if step % log_every == 0 or step == steps:
            run["log"].append((step, step * batch_size / n, sum(run["running"]) / len(run["running"])))
            bar.set_postfix(loss=f"{run['log'][-1][2]:.4f}")
            run["running"] = []
        if step in snapshot_steps:
            run["snapshots"][step] = _ema_unet(unet, ema).half()
        if save is not None and (step % save_every == 0 or step == steps):
            save(state_now())
    return _ema_unet(unet, ema), run["log"], run["snapshots"]
