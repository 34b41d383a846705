"""hls.optimize against independent oracles: the Gaussian's closed forms (the oracle UNet is its exact denoiser),
scipy's ODE solver, brute force over every increasing node sequence, and diffusers' Euler sampler on the schedules."""

from __future__ import annotations

import dataclasses
import time
from itertools import combinations

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler
from scipy.integrate import solve_ivp

from fakes import F64, TRAINING_SIGMAS, OracleUNet, ddpm_config, small_gaussian, tiny_unet
from hls.errors import ArgumentError
from hls.optimize import (
    CostTable,
    candidate_grid,
    cost_table,
    denoiser,
    jump_costs,
    load_tables,
    save_tables,
    search,
    step_costs,
    teacher,
)
from hls.schedules import train_sigmas
from hls.train import training_scheduler

SHAPE = (1, 4, 4)  # D = 16
ALPHAS = training_scheduler().alphas_cumprod
SIGMA_MIN = float(train_sigmas(ALPHAS)[0])
HEUN = {"evals_per_step": 2, "last_step_evals": 1}


def noise(batch: int, shape=SHAPE, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def gaussian_table():
    """The exact Gaussian denoiser as the network: a 30-node grid, teacher with 8 substeps, jump costs; and the
    teacher's states."""
    gaussian, z = small_gaussian(16), noise(64)
    table = cost_table(OracleUNet(gaussian), ALPHAS, z, size=30, substeps=8, model=gaussian)
    return gaussian, z, table, teacher(denoiser(OracleUNet(gaussian), ALPHAS), z, table.sigmas, 8)


@pytest.fixture(scope="module")
def unet_table():
    """A tiny random UNet (3 x 8 x 8): a 7-node grid, teacher with 2 substeps, Gaussian jump costs."""
    return cost_table(tiny_unet(8, 3), ALPHAS, noise(4, (3, 8, 8)), size=7, substeps=2, model=small_gaussian(192))


def brute_force(cost, budget, evals_per_step=1, last_step_evals=1, jump=None, jump_evals=0):
    """(cost, path) of the cheapest increasing node sequence from node 0, or from a jump's landing, to the end node
    spending exactly ``budget`` evaluations; (inf, None) when there is none."""
    end = len(cost) - 1
    starts = [(0, 0.0, 0)]
    if jump is not None:
        starts += [(j, jump[j], jump_evals) for j in range(1, end) if np.isfinite(jump[j])]
    best = (np.inf, None)
    for start, start_cost, spent in starts:
        inner = range(start + 1, end)
        for k in range(len(inner) + 1):
            for middle in combinations(inner, k):
                if spent + k * evals_per_step + last_step_evals != budget:
                    continue
                path = (start, *middle, end)
                total = start_cost + sum(cost[a, b] for a, b in zip(path[:-1], path[1:]))
                if total < best[0]:
                    best = (total, path)
    return best


def random_costs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(np.triu(np.ones((n, n), dtype=bool), k=1), rng.uniform(0, 1, (n, n)), np.inf)  # [n, n]


def eigen_coords(gaussian, x: torch.Tensor) -> np.ndarray:
    """``x [B, ...]`` -> its coordinates about the mean in the eigenbasis ``[B, D]``."""
    return ((x.reshape(x.shape[0], -1).to(F64) - gaussian.mean) @ gaussian.eigvecs).numpy()


def euler_run(unet, schedule, x: torch.Tensor) -> torch.Tensor:
    """diffusers' Euler sampler along ``schedule``'s timesteps (custom timesteps: the model's sigmas, then 0) from
    the VE state ``x [B, C, H, W]`` at the schedule's first sigma."""
    scheduler = EulerDiscreteScheduler.from_config(ddpm_config(clip_sample=False))
    scheduler.set_timesteps(timesteps=schedule.timesteps.tolist())
    np.testing.assert_allclose(scheduler.sigmas.numpy(), schedule.sigmas, rtol=1e-6)
    x = x.float()
    for t in scheduler.timesteps:
        x = scheduler.step(unet(scheduler.scale_model_input(x, t), t).sample, t, x).prev_sample
    return x


# --- denoiser, grid, teacher ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("timestep", [965, None])
def test_denoiser_with_the_oracle_is_the_gaussian_denoiser(timestep):
    gaussian = small_gaussian(16)
    unet = OracleUNet(gaussian)
    sigma = float(train_sigmas(ALPHAS)[timestep]) if timestep is not None else 2.345  # a training sigma, or between
    x = noise(8).to(F64) * 3
    out = denoiser(unet, ALPHAS)(x, sigma)  # [8, 1, 4, 4]
    assert out.dtype == F64 and out.shape == x.shape
    np.testing.assert_allclose(out.reshape(8, -1), gaussian.denoise(x.reshape(8, -1), sigma), atol=2e-6 * sigma)
    (x_vp, t), = unet.inputs
    np.testing.assert_allclose(x_vp.double(), x / np.sqrt(1 + sigma**2), rtol=1e-6)
    if timestep is not None:
        assert t == timestep
    else:  # the fractional timestep whose log-interpolated sigma is sigma
        low = int(np.searchsorted(TRAINING_SIGMAS, sigma)) - 1
        assert low < t < low + 1
        assert np.exp(np.interp(t, np.arange(1000), np.log(TRAINING_SIGMAS))) == pytest.approx(sigma, rel=1e-6)


def test_denoiser_gives_a_real_unet_its_fractional_timestep():
    """UNet2DModel truncates a plain-number timestep to an integer; the denoiser passes a tensor."""
    unet, x, sigma = tiny_unet(8, 3), noise(2, (3, 8, 8)).to(F64), 2.345
    t = float(np.interp(np.log(sigma), np.log(TRAINING_SIGMAS), np.arange(1000)))  # within ~1e-5 of the float32 one
    a = 1 / (1 + sigma**2)
    with torch.no_grad():
        eps = {s: unet((np.sqrt(a) * x).float(), torch.tensor(s)).sample.double() for s in (t, float(int(t)))}
    out = denoiser(unet, ALPHAS)(x, sigma)
    np.testing.assert_allclose(out, x - sigma * eps[t], rtol=1e-5, atol=1e-5)
    assert (out - (x - sigma * eps[float(int(t))])).abs().max() > 1e-3


@pytest.mark.parametrize("size", [2, 7, 30, 100, 999])
@pytest.mark.parametrize("end", [0.0, SIGMA_MIN])
def test_candidate_grid(size, end):
    timesteps, sigmas = candidate_grid(ALPHAS, size, end)
    model = train_sigmas(ALPHAS).astype(np.float64)  # [T] diffusers' float32 sigmas
    lowest = 0 if end == 0 else 1  # sigma_min is training timestep 0's sigma: the end node, not a timestep
    assert timesteps.dtype == np.int64 and sigmas.dtype == np.float64
    assert timesteps.shape == (size,) and sigmas.shape == (size + 1,)
    assert timesteps[0] == 999 and timesteps[-1] == lowest and (np.diff(timesteps) < 0).all()
    np.testing.assert_array_equal(sigmas[:-1], model[timesteps])
    np.testing.assert_allclose(sigmas[:-1], TRAINING_SIGMAS[timesteps], rtol=1e-3)  # float32 round-off near t = 0
    assert sigmas[-1] == end
    if size <= 30:  # sparse enough: every node lies within one training timestep of its log-uniform target
        target = np.geomspace(model[-1], model[lowest], size)
        assert (model[np.maximum(timesteps - 1, 0)] <= target * (1 + 1e-12)).all()
        assert (model[np.minimum(timesteps + 1, 999)] >= target * (1 - 1e-12)).all()


def test_candidate_grid_of_every_timestep():
    timesteps, _ = candidate_grid(ALPHAS, 1000, 0.0)
    np.testing.assert_array_equal(timesteps, np.arange(999, -1, -1))


@pytest.mark.parametrize("end", [0.0, SIGMA_MIN])
def test_teacher_is_the_closed_form_base_path(end):
    """With the exact Gaussian denoiser one base step s -> s' scales each eigen-coordinate about the mean by
    (λ + s s') / (λ + s²): ``substeps`` of them per interval, equal in log sigma (a step into sigma 0: λ / (λ + s²)).
    """
    gaussian, z, substeps = small_gaussian(16), noise(5), 3
    _, sigmas = candidate_grid(ALPHAS, 12, end)
    unet = OracleUNet(gaussian)
    states = teacher(denoiser(unet, ALPHAS), z, sigmas, substeps)  # [13, 5, 1, 4, 4]
    assert states.shape == (13, *z.shape) and states.dtype == F64
    assert unet.calls == 12 * substeps - (substeps - 1 if end == 0 else 0)
    lam = gaussian.eigvals.numpy()  # [D]
    coords = eigen_coords(gaussian, sigmas[0] * z.to(F64))  # [B, D]
    expected = [coords]
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        inner = np.geomspace(s, s_next, substeps + 1) if s_next > 0 else [s, 0.0]
        for a, b in zip(inner[:-1], inner[1:]):
            coords = coords * (lam + a * b) / (lam + a**2)
        expected.append(coords)
    for state, want in zip(states, expected):
        np.testing.assert_allclose(eigen_coords(gaussian, state), want, atol=1e-5)


def test_teacher_converges_at_first_order_to_the_ode_solution():
    """scipy (DOP853) on dc/dσ = σ c / (λ + σ²) per eigen-coordinate: doubling the substeps halves the teacher's error
    at the last positive node (its mean squared error falls 4-fold)."""
    gaussian, z = small_gaussian(16), noise(16)
    _, sigmas = candidate_grid(ALPHAS, 20, 0.0)
    lam = np.tile(gaussian.eigvals.numpy(), 16)  # [B * D]
    start = eigen_coords(gaussian, sigmas[0] * z.to(F64)).ravel()
    exact = solve_ivp(lambda s, c: s * c / (lam + s**2), (sigmas[0], sigmas[-2]), start, method="DOP853",
                      rtol=1e-12, atol=1e-12).y[:, -1]
    D = denoiser(OracleUNet(gaussian), ALPHAS)
    errors = [np.mean((eigen_coords(gaussian, teacher(D, z, sigmas, n)[-2]).ravel() - exact) ** 2) for n in (4, 8, 16)]
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5, errors


# --- costs ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("carried", [False, True])
@pytest.mark.parametrize("end", [0.0, SIGMA_MIN])
def test_step_costs_are_one_base_step_against_the_teacher(carried, end):
    """The closed-form step scales each eigen-coordinate about the mean by (λ + s s') / (λ + s²); carried to the end
    by the Gaussian's flow, an error at sigma_j shrinks by sqrt((λ + end²) / (λ + sigma_j²))."""
    gaussian, z = small_gaussian(16), noise(6)
    unet = OracleUNet(gaussian)
    D = denoiser(unet, ALPHAS)
    _, sigmas = candidate_grid(ALPHAS, 6, end)
    states = teacher(D, z, sigmas, 2)
    unet.calls = 0
    cost = step_costs(D, states, sigmas, gaussian if carried else None)  # [7, 7]
    assert unet.calls == 6  # one evaluation per node that has an edge out
    assert np.isinf(cost[np.tril_indices(7)]).all()
    lam = gaussian.eigvals.numpy()
    for i, j in zip(*np.triu_indices(7, k=1)):
        step = eigen_coords(gaussian, states[i]) * (lam + sigmas[i] * sigmas[j]) / (lam + sigmas[i] ** 2)
        error = step - eigen_coords(gaussian, states[j])
        if carried:
            error *= np.sqrt((lam + end**2) / (lam + sigmas[j] ** 2))
        assert cost[i, j] == pytest.approx(np.mean(error**2), rel=1e-3)


def test_carried_costs_spend_steps_at_low_noise(gaussian_table):
    """Raw errors grow as sigma²: a step at high noise looks dear though the flow forgets most of its error. Carried to
    the end, the same teacher prices the first step out of sigma_max far lower, and the plain path's first step goes
    further down."""
    gaussian, z, table, states = gaussian_table
    raw = step_costs(denoiser(OracleUNet(gaussian), ALPHAS), states, table.sigmas)
    high = np.flatnonzero(table.sigmas > 10)[1:]  # the nodes above sigma 10 but the start
    assert (table.cost[0, high] < 1e-2 * raw[0, high]).all()
    assert table.optimize(3).path[1] > dataclasses.replace(table, cost=raw).optimize(3).path[1]


def test_jump_costs_are_the_landing_against_the_teacher(gaussian_table):
    gaussian, z, table, states = gaussian_table
    assert np.isinf(table.jump[0]) and np.isinf(table.jump[-1]) and np.isfinite(table.jump[1:-1]).all()
    np.testing.assert_array_equal(jump_costs(gaussian, states, table.sigmas), table.jump)
    lam = gaussian.eigvals.numpy()
    start = eigen_coords(gaussian, table.sigmas[0] * z.to(F64))
    for j in (1, 10, 29):  # exact landing: each coordinate scaled by sqrt((λ + s_j²) / (λ + s_0²)); then carried to 0
        landing = start * np.sqrt((lam + table.sigmas[j] ** 2) / (lam + table.sigmas[0] ** 2))
        error = (landing - eigen_coords(gaussian, states[j])) * np.sqrt(lam / (lam + table.sigmas[j] ** 2))
        assert table.jump[j] == pytest.approx(np.mean(error**2), rel=1e-6, abs=1e-15)


# --- the search -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [{}, HEUN, {"evals_per_step": 3, "last_step_evals": 2}])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_matches_brute_force_on_random_costs(rule, seed):
    cost, reached = random_costs(8, seed), 0
    for budget in range(1, 3 * 6 + 3):
        want, path = brute_force(cost, budget, **rule)
        if path is None:
            with pytest.raises(ArgumentError, match="budget"):
                search(cost, budget, **rule)
            continue
        got_path, got, landing = search(cost, budget, **rule)
        assert tuple(got_path) == path and got == pytest.approx(want, rel=1e-12) and landing is None
        reached += 1
    assert reached == 7  # 0..6 intermediate nodes


@pytest.mark.parametrize("rule", [{}, HEUN])
@pytest.mark.parametrize("jump_evals", [0, 1, 2])
def test_search_with_jump_matches_brute_force_on_random_costs(rule, jump_evals):
    rng = np.random.default_rng(jump_evals)
    cost = random_costs(8, 10 + jump_evals)
    jump = np.concatenate([[np.inf], rng.uniform(0, 2, 6), [np.inf]])  # [8]
    jump[3] = np.inf  # a node the model cannot land on
    for budget in range(1, 16):
        want, path = brute_force(cost, budget, **rule, jump=jump, jump_evals=jump_evals)
        if path is None:
            with pytest.raises(ArgumentError, match="budget"):
                search(cost, budget, **rule, jump=jump, jump_evals=jump_evals)
            continue
        got_path, got, landing = search(cost, budget, **rule, jump=jump, jump_evals=jump_evals)
        assert tuple(got_path) == path and got == pytest.approx(want, rel=1e-12)
        assert landing == (path[0] if path[0] != 0 else None)


@pytest.mark.parametrize("rule", [{}, HEUN])
def test_search_matches_brute_force_on_real_costs(unet_table, rule):
    table = unet_table
    assert table.cost.shape == (8, 8) and table.jump.shape == (8,)
    for budget in range(1, 14):
        for jump, jump_evals in ((None, 0), (table.jump, 0), (table.jump, 1)):
            want, path = brute_force(table.cost, budget, **rule, jump=jump, jump_evals=jump_evals)
            if path is None:
                continue
            got_path, got, _ = search(table.cost, budget, **rule, jump=jump, jump_evals=jump_evals)
            assert tuple(got_path) == path and got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("unet", ["tiny", "oracle"])
def test_on_the_teachers_own_grid_the_cost_is_zero(unet):
    """substeps = 1: the teacher is the one-step-per-node path, which spends exactly G (heun: 2G - 1) evaluations."""
    shape = (3, 8, 8) if unet == "tiny" else SHAPE
    net = tiny_unet(8, 3) if unet == "tiny" else OracleUNet(small_gaussian(16))
    table = cost_table(net, ALPHAS, noise(3, shape), size=9, substeps=1)
    every = list(range(10))
    plain = table.optimize(9)
    heun = table.optimize(2 * 9 - 1, **HEUN)
    for found in (plain, heun):
        assert list(found.path) == every and found.error <= 1e-12 and found.landing is None
    np.testing.assert_array_equal(plain.schedule.timesteps, table.timesteps)
    assert (table.cost[every[:-1], every[1:]] <= 1e-12).all()


def test_search_is_cheap_next_to_the_table():
    """Measured, not asserted: the expensive part (teacher + costs on a tiny UNet) against one search."""
    z = noise(8, (3, 8, 8))
    start = time.perf_counter()
    table = cost_table(tiny_unet(8, 3), ALPHAS, z, size=20, substeps=2)
    built = time.perf_counter() - start
    start = time.perf_counter()
    found = table.optimize(10)
    searched = time.perf_counter() - start
    print(f"\ncost table (G = 20, 2 substeps, 59 UNet evaluations of 8 x 3 x 8 x 8): {built:.3f} s; "
          f"search (budget 10): {searched * 1e3:.2f} ms; ratio {built / searched:.0f}")
    assert found.schedule.steps == 10


# --- the Gaussian: the jump as a free first edge --------------------------------------------------------------------


@pytest.mark.parametrize("budget", [1, 2, 3, 4])
def test_free_exact_jump_lands_low_and_reaches_the_ode_solution(gaussian_table, budget):
    gaussian, z, table, states = gaussian_table
    found = table.optimize(budget, jump=True)
    assert found.landing is not None and found.landing == table.sigmas[found.path[0]]
    assert found.landing < 0.1 and found.path[0] >= 23  # among the 7 lowest of 29 positive nodes (sigma_max ~ 157)
    if budget == 1:
        assert found.path[1:] == (30,)  # the landing, then x0
    assert found.schedule.steps == budget and found.schedule.sigmas[-1] == 0
    # run the steps: diffusers' Euler from the exact landing; the exact ODE solution: teleport to ~0, denoise
    flat = (table.sigmas[0] * z.to(F64)).reshape(z.shape[0], -1)  # [B, D]
    landing = gaussian.teleport(flat, table.sigmas[0], found.landing).reshape(z.shape)
    ours = euler_run(OracleUNet(gaussian), found.schedule, landing).reshape(z.shape[0], -1).to(F64)
    exact = gaussian.denoise(gaussian.teleport(flat, table.sigmas[0], 1e-6), 1e-6)  # [B, D]
    teacher_error = float((states[-1].reshape(z.shape[0], -1) - exact).square().mean())
    assert float((ours - exact).square().mean()) <= teacher_error


def test_jump_refused_when_its_cost_is_huge(gaussian_table):
    table = gaussian_table[2]
    dear = dataclasses.replace(table, jump=table.jump + 1e6)
    for budget in (1, 3, 5):
        plain, refused = table.optimize(budget), dear.optimize(budget, jump=True)
        assert refused.landing is None and refused.path == plain.path and refused.error == plain.error
        assert refused.path[0] == 0 and refused.schedule.sigmas[0] == table.sigmas[0]


@pytest.mark.parametrize("rule, jump_evals, budget", [({}, 2, 5), (HEUN, 1, 6), (HEUN, 1, 2), (HEUN, 3, 6)])
def test_jump_evaluations_count_in_the_budget(gaussian_table, rule, jump_evals, budget):
    table = gaussian_table[2]
    found = table.optimize(budget, jump=True, jump_evals=jump_evals, **rule)
    assert found.landing is not None
    per_step = rule.get("evals_per_step", 1)
    assert jump_evals + per_step * (found.schedule.steps - 1) + 1 == budget
    if budget - jump_evals == 1:  # only the jump then one step to x0 fits
        assert found.schedule.steps == 1


def test_schedule_of_a_path(gaussian_table):
    table = gaussian_table[2]
    found = table.optimize(5)
    nodes = list(found.path)
    assert found.schedule.timesteps.dtype == np.int64 and found.schedule.sigmas.dtype == np.float64
    np.testing.assert_array_equal(found.schedule.timesteps, table.timesteps[nodes[:-1]])
    np.testing.assert_array_equal(found.schedule.sigmas, table.sigmas[nodes])
    assert found.schedule.inference_steps == found.schedule.steps == 5
    assert found.error == pytest.approx(sum(table.cost[a, b] for a, b in zip(nodes[:-1], nodes[1:])), rel=1e-12)


# --- bad arguments --------------------------------------------------------------------------------------------------


COST = random_costs(5, 0)  # [5, 5]
SIGMAS = candidate_grid(ALPHAS, 4)[1]  # [5]


def oracle_denoiser():
    return denoiser(OracleUNet(small_gaussian(16)), ALPHAS)


BAD_CALLS = [
    ("size", lambda: candidate_grid(ALPHAS, 1)),
    ("size", lambda: candidate_grid(ALPHAS, 1001)),
    ("size", lambda: candidate_grid(ALPHAS, 1000, SIGMA_MIN)),
    ("size", lambda: candidate_grid(ALPHAS, 7.0)),
    ("end", lambda: candidate_grid(ALPHAS, 7, -0.1)),
    ("end", lambda: candidate_grid(ALPHAS, 7, 1000.0)),
    ("substeps", lambda: teacher(oracle_denoiser(), noise(2), SIGMAS, 0)),
    ("grid_sigmas", lambda: teacher(oracle_denoiser(), noise(2), SIGMAS[::-1], 1)),
    ("grid_sigmas", lambda: teacher(oracle_denoiser(), noise(2), [5.0, 0.0, 0.0], 1)),
    ("states", lambda: step_costs(oracle_denoiser(), torch.zeros(3, 2, *SHAPE, dtype=F64), SIGMAS)),
    ("states", lambda: jump_costs(small_gaussian(8), torch.zeros(5, 2, *SHAPE, dtype=F64), SIGMAS)),
    ("budget", lambda: search(COST, 0)),
    ("budget", lambda: search(COST, 5)),
    ("budget", lambda: search(COST, 2, **HEUN)),
    ("budget", lambda: search(COST, True)),
    ("evals_per_step", lambda: search(COST, 2, evals_per_step=0)),
    ("last_step_evals", lambda: search(COST, 2, last_step_evals=0)),
    ("cost", lambda: search(COST[:, :3], 2)),
    ("cost", lambda: search(np.full((5, 5), np.nan), 2)),
    ("jump", lambda: search(COST, 2, jump=np.zeros(4))),
    ("jump_evals", lambda: search(COST, 2, jump=np.zeros(5), jump_evals=-1)),
    ("budget", lambda: search(COST, 2, **HEUN, jump=np.full(5, np.inf), jump_evals=1)),  # only a refused jump fits
    ("jump", lambda: CostTable(np.arange(3, -1, -1), SIGMAS, COST).optimize(2, jump=True)),
    ("substeps", lambda: cost_table(OracleUNet(small_gaussian(16)), ALPHAS, noise(2), size=4, substeps=0)),
]


@pytest.mark.parametrize("name, call", BAD_CALLS)
def test_bad_arguments_name_the_argument(name, call):
    with pytest.raises(ArgumentError) as error:
        call()
    assert error.value.name == name


def test_tables_round_trip_by_their_end_sigma(gaussian_table, unet_table, tmp_path):
    tables = {0.0: gaussian_table[2], SIGMA_MIN: unet_table}
    save_tables(tmp_path / "costs.safetensors", tables)
    back = load_tables(tmp_path / "costs.safetensors")
    assert list(back) == [0.0, SIGMA_MIN]  # the exact floats: a scheduler's end_sigma finds its table
    for end, table in tables.items():
        for field in dataclasses.fields(CostTable):
            np.testing.assert_array_equal(getattr(back[end], field.name), getattr(table, field.name))
        assert back[end].optimize(5, jump=True).record() == table.optimize(5, jump=True).record()
    save_tables(tmp_path / "again.safetensors", back)
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "costs.safetensors").read_bytes()
    with pytest.raises(ArgumentError, match="tables = 'a table without jump costs'"):
        save_tables(tmp_path / "no.safetensors", {0.0: dataclasses.replace(unet_table, jump=None)})
