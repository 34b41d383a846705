"""Claims from FIDs with bootstrap intervals: one FID's interval, paired comparisons of two sample sets, the free skip.

Every sample set of a run draws image i from seed + i, so resampling image indices jointly (``hls.fid.
bootstrap_indices`` shared by all sets, ``hls.fid.fid_replicates``) gives paired replicates: the ratio of two sets'
replicate FIDs keeps what they share (the seeds, the reference) out of its spread. A gain, a tie or a loss is claimed
only from the interval of that ratio (``compare``).

A resample repeats about a third of its images, which raises its FID far more than its spread, while the spread still
estimates the FID's own: so an interval is the replicates' percentile interval moved so that its median is the point
estimate (``interval``), for FIDs and ratios alike.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
VERDICTS = ("gain", "tie", "loss")


def interval(point: float, replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` interval of a statistic ``point`` from its bootstrap ``replicates [B]`` (see module doc)."""
    shift = np.asarray(replicates, dtype=np.float64) - np.median(replicates)
    lo, hi = np.quantile(shift, [(1 - level) / 2, (1 + level) / 2])
    return float(point + lo), float(point + hi)


def compare(fid_a: float, replicates_a: np.ndarray, fid_b: float, replicates_b: np.ndarray, *,
            tolerance: float = 0.0, level: float = LEVEL) -> dict:
    """Set a against set b from paired replicates (same resamples): the FID ratio a / b, its interval, a verdict.

    ``verdict``: ``"gain"`` when the whole interval lies below ``1 - tolerance`` (a is better), ``"loss"`` when it lies
    above ``1 + tolerance``, else ``"tie"``.
    """
    ratio = fid_a / fid_b
    lo, hi = interval(ratio, np.asarray(replicates_a) / np.asarray(replicates_b), level)
    verdict = "gain" if hi < 1 - tolerance else "loss" if lo > 1 + tolerance else "tie"
    return {"ratio": ratio, "ratio_low": lo, "ratio_high": hi, "verdict": verdict}


def free_skip(fids: dict[int, float], replicates: dict[int, np.ndarray], tolerance: float,
              level: float = LEVEL) -> int | None:
    """The largest skip whose FID is not a loss against skip 0's: ``compare(k, 0, tolerance=tolerance)`` is a tie or a
    gain. ``fids {skip: fid}``, ``replicates {skip: [B]}`` (paired). None without skip 0. The measured counterpart of
    ``hls.score_error.predicted_skip``.
    """
    if 0 not in fids:
        return None
    return max(k for k in fids if compare(fids[k], replicates[k], fids[0], replicates[0], tolerance=tolerance,
                                          level=level)["verdict"] != "loss")
