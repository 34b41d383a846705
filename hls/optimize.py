"""Optimized schedules: GITS-style step placement (Chen et al., ICML 2024) by dynamic programming on the model itself,
with the analytic jump as a free first edge.

Everything is VE (``x = x0 + sigma * eps``, sigma descending). The *nodes* are a candidate grid of G integer training
timesteps, roughly uniform in log sigma from the model's top (sigma_max, node 0) down, then the end sigma (0 for
samplers that land on x0, or sigma_min) as node G. The *teacher* runs first-order base steps (DDIM, i.e. Euler in VE:
``x' = x0_hat + (s' / s) (x - x0_hat)``) from ``sigma_max * noise`` with ``substeps`` substeps per grid interval and
keeps its state at every node. The *cost* of an edge i -> j is the mean squared error (per coordinate, over the
batch) of one base step from the teacher at i against the teacher at j; the analytic model's jump from node 0 to a
node j costs its landing's error against the teacher at j. With an analytic model every error is first *carried to
the end node* by the model's probability flow (``model.teleport`` from sigma_j to the end): an error at high noise
is mostly forgotten by the time the sample is made (for the Gaussian each eigen-coordinate of it shrinks by
sqrt((λ + end²) / (λ + sigma_j²))), so raw errors, which grow as sigma², would spend steps where they change little.
The *search* is the cheapest path from node 0 (or from a jump's landing) to the end node with exactly N UNet
evaluations. One teacher and cost table (``cost_table``, the
expensive part: G * substeps + G UNet evaluations) serve every budget (``CostTable.optimize``, a cheap search).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from hls.analytic import F64
from hls.errors import ArgumentError, check_integer
from hls.gaussian import ve_to_vp
from hls.schedules import OPTIMIZABLE, Optimized, Schedule, end_sigma, scheduler_name, timestep_of_sigma, train_sigmas

ROUND_OFF = 1e-5  # relative: a training sigma this close above ``end`` is ``end`` (float32 vs float64 arithmetic)


# --- the model as a denoiser ----------------------------------------------------------------------------------------


def _timestep(sigma: float, train: np.ndarray, alphas_cumprod) -> int | float:
    """The UNet timestep of VE ``sigma``: the integer training timestep whose sigma it is, else the fractional one."""
    k = int(np.searchsorted(train, sigma))
    if k < len(train) and train[k] == sigma:
        return k
    return float(timestep_of_sigma(sigma, alphas_cumprod))


def denoiser(unet, alphas_cumprod, dtype=torch.float32):
    """``unet`` (a diffusers epsilon-prediction UNet on VP inputs, ``unet(x_vp, t).sample``) as the VE denoiser
    ``D(x [B, ...], sigma) -> x0_hat [B, ...]`` (float64).

    The UNet sees the VP sample ``sqrt(a) x`` (``a = 1 / (1 + sigma^2)``) in ``dtype`` at the timestep of sigma, a
    0-d tensor (UNet2DModel truncates plain numbers to integers): int64 for the model's own sigmas (``train_sigmas``),
    else the fractional one in float32, log-sigma interpolated, as diffusers' Euler. ``x0_hat = x - sigma * eps`` is
    formed in float64.
    """
    train = train_sigmas(alphas_cumprod).astype(np.float64)  # [T] increasing

    def denoise(x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = float(sigma)
        t = torch.tensor(_timestep(sigma, train, alphas_cumprod), device=x.device)  # int64 or float32, as samplers
        with torch.inference_mode():
            eps = unet(ve_to_vp(x.to(F64), 1 / (1 + sigma**2)).to(dtype), t).sample  # [B, ...]
        return x.to(F64) - sigma * eps.to(F64)

    return denoise


def base_step(x: torch.Tensor, x0: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One first-order step (DDIM = Euler in VE) from ``x`` at ``sigma`` to ``sigma_next``, given ``x0 = D(x, sigma)``;
    with ``sigma_next = 0`` it returns ``x0``."""
    return x0 + (sigma_next / sigma) * (x - x0)


# --- nodes, teacher, costs ------------------------------------------------------------------------------------------


def candidate_grid(alphas_cumprod, size: int, end: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The optimizer's nodes -> (timesteps int64 ``[G]``, sigmas float64 ``[G + 1]``), ``G = size``.

    ``size`` distinct integer training timesteps, descending from T - 1 (sigma_max, node 0) to the lowest one whose
    sigma is above ``end``, each the nearest (in log sigma) to ``size`` points uniform in log sigma, pushed apart
    where the model's own sigmas are sparser than that (near t = 0). Their sigmas are the model's (``train_sigmas``);
    ``end`` (0: x0, or sigma_min) is appended as node G, which has no timestep.
    """
    train = train_sigmas(alphas_cumprod).astype(np.float64)  # [T] increasing
    end = float(end)
    if not 0 <= end < train[-1]:
        raise ArgumentError("end", end, f"must be in [0, sigma_max = {train[-1]:.6g})")
    lowest = int(np.searchsorted(train, end * (1 + ROUND_OFF), side="right"))  # the lowest timestep above end
    check_integer("size", size, 2)
    if size > len(train) - lowest:
        raise ArgumentError("size", size, f"must be <= {len(train) - lowest}, the training timesteps above end = {end}")
    target = np.linspace(np.log(train[-1]), np.log(train[lowest]), size)  # [G] log sigmas
    nearest = np.abs(np.log(train)[:, None] - target[None, :]).argmin(axis=0)  # [G]
    timesteps = np.empty(size, dtype=np.int64)
    above = len(train)
    for k, t in enumerate(nearest):  # below the previous node, above room for the remaining ones
        timesteps[k] = above = min(max(int(t), lowest + size - 1 - k), above - 1)
    return timesteps, np.append(train[timesteps], end)


def _check_sigmas(grid_sigmas) -> np.ndarray:
    sigmas = np.asarray(grid_sigmas, dtype=np.float64)
    if sigmas.ndim != 1 or len(sigmas) < 2 or not (np.diff(sigmas) < 0).all() or not sigmas[-2] > 0 or sigmas[-1] < 0:
        raise ArgumentError("grid_sigmas", sigmas.tolist(), "must be >= 2 strictly decreasing sigmas, all > 0 but "
                                                            "the last (>= 0)")
    return sigmas


def _substeps(sigma: float, sigma_next: float, substeps: int) -> np.ndarray:
    """The teacher's sigmas over one grid interval ``[substeps + 1]``, equal in log sigma, ends exact; into sigma 0
    one step ``[2]``."""
    if sigma_next == 0:
        return np.array([sigma, 0.0])
    inner = np.exp(np.linspace(np.log(sigma), np.log(sigma_next), substeps + 1))
    inner[0], inner[-1] = sigma, sigma_next
    return inner


def teacher(D, noise: torch.Tensor, grid_sigmas, substeps: int, progress: bool = False) -> torch.Tensor:
    """Teacher trajectories at every node: float64 ``[G + 1, B, ...]`` from standard normal ``noise [B, ...]``.

    From ``x = sigma_max * noise`` (sigma_max = ``grid_sigmas[0]``), first-order base steps (``base_step``) with
    ``substeps`` steps equal in log sigma inside each grid interval. An interval into sigma 0 (the end node of a
    sampler that lands on x0) is one step, as every such sampler's last step: the teacher's end state is its denoised
    state at the last positive node. With ``substeps = 1`` this is the one-step-per-node base path.
    """
    sigmas = _check_sigmas(grid_sigmas)
    check_integer("substeps", substeps, 1)
    plan = [_substeps(s, s_next, substeps) for s, s_next in zip(sigmas[:-1], sigmas[1:])]
    states = torch.empty((len(sigmas), *noise.shape), dtype=F64, device=noise.device)  # [G + 1, B, ...]
    states[0] = x = sigmas[0] * noise.to(F64)
    bar = tqdm(total=sum(len(p) - 1 for p in plan), desc="teacher", unit="step", disable=not progress, leave=False)
    for node, inner in enumerate(plan, start=1):
        for s, s_next in zip(inner[:-1], inner[1:]):
            x = base_step(x, D(x, s), float(s), float(s_next))
            bar.update()
        states[node] = x
    bar.close()
    return states


def carrier(model, grid_sigmas):
    """``carry(x [B, ...], j) -> [B, D]``: a state at node j carried to the end node by ``model``'s probability flow
    (``model.teleport``, float64), so that the difference of two carried states is the error that survives to the
    sample; without a model the flattened state itself (the raw error)."""
    sigmas = _check_sigmas(grid_sigmas)

    def carry(x: torch.Tensor, j: int) -> torch.Tensor:
        flat = x.flatten(1).to(F64)  # [B, D]
        if model is None or j == len(sigmas) - 1:
            return flat
        return model.teleport(flat, float(sigmas[j]), float(sigmas[-1])).to(F64)

    return carry


def step_costs(D, states: torch.Tensor, grid_sigmas, model=None, progress: bool = False) -> np.ndarray:
    """cost float64 ``[G + 1, G + 1]``: ``cost[i, j]`` the mean squared error (per coordinate, over the batch) of one
    base step from the teacher's state at node i to node j against the teacher's state at j, both carried to the end
    node by the analytic ``model``'s flow (``carrier``; None: the raw error at j); inf where j <= i. One ``D``
    evaluation per node i < G serves every j."""
    sigmas = _check_sigmas(grid_sigmas)
    if states.shape[0] != len(sigmas):
        raise ArgumentError("states", tuple(states.shape), f"must hold one state per node ({len(sigmas)})")
    carry = carrier(model, sigmas)
    targets = [carry(state, j) for j, state in enumerate(states)]  # [G + 1] x [B, D]: the teacher, carried
    cost = np.full((len(sigmas), len(sigmas)), np.inf)
    for i in tqdm(range(len(sigmas) - 1), desc="costs", unit="node", disable=not progress, leave=False):
        x, s = states[i], float(sigmas[i])
        x0 = D(x, s)
        errors = [(carry(base_step(x, x0, s, float(sigmas[j])), j) - targets[j]).square().mean()
                  for j in range(i + 1, len(sigmas))]  # one base step i -> j against the teacher at j
        cost[i, i + 1:] = torch.stack(errors).cpu().numpy()
    return cost


def jump_costs(model, states: torch.Tensor, grid_sigmas) -> np.ndarray:
    """float64 ``[G + 1]``: the mean squared error of the analytic model's landing ``model.teleport(x, sigma_max,
    sigma_j)`` from the teacher's start ``x`` against the teacher at node j, both carried to the end node by the
    model's flow as in ``step_costs``, for the positive-sigma nodes 1..G-1; inf at node 0 and at the end node (a jump
    there would leave no UNet step)."""
    sigmas = _check_sigmas(grid_sigmas)
    flat = states.flatten(2)  # [G + 1, B, D]
    if states.shape[0] != len(sigmas) or model.dim != flat.shape[-1]:
        raise ArgumentError("states", tuple(states.shape), f"must be one state per node ({len(sigmas)}) of the "
                                                           f"model's dimension {model.dim}")
    carry, cost = carrier(model, sigmas), np.full(len(sigmas), np.inf)
    for j in range(1, len(sigmas) - 1):
        landing = model.teleport(flat[0], float(sigmas[0]), float(sigmas[j]))  # [B, D]
        cost[j] = float((carry(landing, j) - carry(flat[j], j)).square().mean())
    return cost


# --- the search -----------------------------------------------------------------------------------------------------


def _check_budget(budget, n: int, evals_per_step: int, last_step_evals: int, jump_evals: int | None) -> None:
    """ArgumentError unless some path spends exactly ``budget``: ``last + k * per_step`` with k intermediate nodes
    (at most n - 2 from node 0, n - 3 after a jump costing ``jump_evals``)."""
    def reachable(spent: int, most: int) -> bool:
        rest = budget - spent - last_step_evals
        return rest >= 0 and rest % evals_per_step == 0 and rest // evals_per_step <= most

    check_integer("budget", budget, 1)
    if reachable(0, n - 2) or (jump_evals is not None and reachable(jump_evals, n - 3)):
        return
    rule = f"{last_step_evals} + k * {evals_per_step} with 0 <= k <= {n - 2}"
    if jump_evals is not None:
        rule += f", or {jump_evals} + that with k <= {n - 3} after a jump"
    raise ArgumentError("budget", budget, f"no path of {n} nodes spends exactly that many UNet evaluations: {rule}")


def search(cost, budget: int, *, evals_per_step: int = 1, last_step_evals: int = 1, jump=None,
           jump_evals: int = 0) -> tuple[list[int], float, int | None]:
    """The cheapest path from node 0 to the end node (n - 1) with exactly ``budget`` UNet evaluations, by dynamic
    programming over (evaluations spent, node) -> (path of node indices, total cost, landing node or None).

    ``cost [n, n]``: edge costs (inf: no edge). An edge into node j costs ``evals_per_step`` evaluations, into the end
    node ``last_step_evals`` (heun: 2 and 1, its last step into sigma 0 being one Euler step). ``jump [n]``: the
    analytic jump's cost from node 0 to each node 1..n-2 (entries 0 and n - 1 are no edges); the path may start with
    it, spending ``jump_evals`` evaluations, and then starts at its landing, which is the path's first node. Total
    cost: the sum of edge costs. Ties: the earliest previous node; a landing replaces a plain arrival at its node
    only where strictly cheaper.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] < 2 or np.isnan(cost).any():
        raise ArgumentError("cost", cost.shape, "must be a square [n, n] array, n >= 2, without NaN")
    n = cost.shape[0]
    check_integer("evals_per_step", evals_per_step, 1)
    check_integer("last_step_evals", last_step_evals, 1)
    if jump is not None:
        jump = np.asarray(jump, dtype=np.float64)
        if jump.shape != (n,) or np.isnan(jump).any():
            raise ArgumentError("jump", jump.shape, f"must be [n] = [{n}] costs without NaN, or None")
        check_integer("jump_evals", jump_evals, 0)
    _check_budget(budget, n, evals_per_step, last_step_evals, None if jump is None else jump_evals)

    end = n - 1
    inner = np.arange(1, end)  # [n - 2] the nodes between the start and the end
    best = np.full((budget + 1, n), np.inf)  # [E + 1, n] cheapest cost to stand at node j with e evaluations spent
    parent = np.full((budget + 1, n), -1)  # [E + 1, n] the previous node; -1: the path's start
    best[0, 0] = 0.0
    for e in range(budget + 1):
        for nodes, spent in ((inner, e - evals_per_step), ([end], e - last_step_evals)):
            if spent >= 0:  # one edge into ``nodes`` from any earlier node (inf costs: no edge)
                options = best[spent][:, None] + cost[:, nodes]  # [n, len(nodes)] over the previous node
                parent[e, nodes] = options.argmin(axis=0)
                best[e, nodes] = options.min(axis=0)
        if jump is not None and e == jump_evals:  # or start at a landing, where strictly cheaper
            land = inner[jump[inner] < best[e, inner]]
            best[e, land], parent[e, land] = jump[land], -1
    total = float(best[budget, end])
    if not np.isfinite(total):
        raise ArgumentError("budget", budget, "no path of finite cost spends exactly that many UNet evaluations")
    path, e = [end], budget
    while parent[e, path[-1]] != -1:
        e, previous = e - (last_step_evals if path[-1] == end else evals_per_step), int(parent[e, path[-1]])
        path.append(previous)
    path.reverse()
    return path, total, (path[0] if path[0] != 0 else None)


# --- the table and its schedules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostTable:
    """What every budget's search reads: the grid (``timesteps [G]`` int64, ``sigmas [G + 1]`` float64), the step
    costs ``cost [G + 1, G + 1]`` and the analytic jump's costs ``jump [G + 1]`` (None: no model given)."""

    timesteps: np.ndarray
    sigmas: np.ndarray
    cost: np.ndarray
    jump: np.ndarray | None = None

    def optimize(self, budget: int, *, jump: bool = False, evals_per_step: int = 1, last_step_evals: int = 1,
                 jump_evals: int = 0) -> Optimized:
        """The cheapest schedule with exactly ``budget`` UNet evaluations (``search``); ``jump``: may start with the
        analytic jump (``jump_evals`` evaluations), else the plain optimized schedule from sigma_max."""
        if jump and self.jump is None:
            raise ArgumentError("jump", jump, "needs a table with jump costs (cost_table with a model)")
        path, error, landing = search(self.cost, budget, evals_per_step=evals_per_step,
                                      last_step_evals=last_step_evals, jump=self.jump if jump else None,
                                      jump_evals=jump_evals)
        nodes = np.array(path)  # [S + 1]
        schedule = Schedule(self.timesteps[nodes[:-1]], self.sigmas[nodes], len(path) - 1)
        return Optimized(schedule, None if landing is None else float(self.sigmas[landing]), error, tuple(path))


TABLE_FIELDS = ("timesteps", "sigmas", "cost", "jump")


def save_tables(path, tables: dict[float, CostTable]) -> None:
    """Write cost tables by the sigma their sampler ends at (``{end: CostTable}``, with jump costs) to ``path`` as
    safetensors (deterministic bytes; not atomic)."""
    tensors = {}
    for k, table in enumerate(tables.values()):
        if table.jump is None:
            raise ArgumentError("tables", "a table without jump costs", "each needs them (cost_table with a model)")
        tensors |= {f"{k}.{name}": torch.from_numpy(np.ascontiguousarray(getattr(table, name)))
                    for name in TABLE_FIELDS}
    save_file(tensors, str(path), metadata={"ends": json.dumps(list(tables))})


def load_tables(path) -> dict[float, CostTable]:
    """The ``{end: CostTable}`` that ``save_tables`` wrote."""
    with safe_open(str(path), framework="pt") as f:
        ends = json.loads(f.metadata()["ends"])
        return {end: CostTable(*(f.get_tensor(f"{k}.{name}").numpy() for name in TABLE_FIELDS))
                for k, end in enumerate(ends)}


def cost_table(unet, alphas_cumprod, noise: torch.Tensor, *, size: int, substeps: int, end: float = 0.0,
               model=None, progress: bool = False) -> CostTable:
    """The expensive part, once for every budget: the grid (``candidate_grid``), the teacher from standard normal
    ``noise [B, C, H, W]`` (seeds disjoint from every evaluation set; on the UNet's device), the step costs and, with
    an analytic ``model`` (on the same device), the jump costs, every error carried to the end by the model's flow.
    ``size * substeps + size`` UNet evaluations (fewer by ``substeps - 1`` when ``end = 0``)."""
    timesteps, sigmas = candidate_grid(alphas_cumprod, size, end)
    D = denoiser(unet, alphas_cumprod)
    states = teacher(D, noise, sigmas, substeps, progress)  # [G + 1, B, C, H, W]
    jump = None if model is None else jump_costs(model, states, sigmas)
    return CostTable(timesteps, sigmas, step_costs(D, states, sigmas, model, progress), jump)


# --- for a diffusers sampler ----------------------------------------------------------------------------------------

TEACHER_SEED = 2**31  # teacher image i is drawn from seed TEACHER_SEED + i, far from every evaluation set (seed + i)


def teacher_noise(n: int, shape, seed: int = TEACHER_SEED) -> torch.Tensor:
    """Standard normal float32 ``[n, *shape]``, image i from ``torch.Generator().manual_seed(seed + i)`` only."""
    check_integer("n", n, 1)
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed + i))
                        for i in range(n)])


def evaluation_rule(scheduler) -> dict:
    """The UNet evaluations a step of ``scheduler`` costs, as ``CostTable.optimize`` keywords: heun 2 a step and 1 for
    its last (``hls.budget.budget_nfe``), the others 1."""
    heun = scheduler_name(scheduler) == "heun"
    return {"evals_per_step": 2 if heun else 1, "last_step_evals": 1}


def sampler_table(unet, scheduler, model, *, teacher: int, size: int, substeps: int, progress: bool = False,
                  device="cpu") -> CostTable:
    """``cost_table`` for a diffusers ``scheduler`` of ``OPTIMIZABLE`` on ``unet``, ending where the scheduler ends,
    from ``teacher`` trajectories (``teacher_noise``), with the jump of the analytic ``model`` (None: none)."""
    name = scheduler_name(scheduler)
    if name not in OPTIMIZABLE:
        raise ArgumentError("scheduler", name, f"must be one of {', '.join(OPTIMIZABLE)} (their steps can be placed)")
    config = unet.config
    size_hw = config.sample_size if isinstance(config.sample_size, (list, tuple)) else (config.sample_size,) * 2
    noise = teacher_noise(teacher, (config.in_channels, *size_hw)).to(device)
    return cost_table(unet, scheduler.alphas_cumprod, noise, size=size, substeps=substeps,
                      end=end_sigma(scheduler), model=None if model is None else model.to(device), progress=progress)
