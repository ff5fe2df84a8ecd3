"""Policy-evaluation statistics: how well scores in imagination rank and match real ones."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from worldmodel.evaluation.metrics import mmrv, pearson, spearman


def policy_statistics(names: Sequence[str], real: np.ndarray, imagined: np.ndarray) -> dict:
    """real, imagined: (P, M) returns of P policies over M episodes each (paired: same start).

    Returns per-policy means and return errors, and across policies Pearson r, Spearman rho and
    MMRV of the mean returns (MMRV in return units; 0 = every pair ordered as in reality).
    """
    real, imagined = np.asarray(real, float), np.asarray(imagined, float)
    if real.shape != imagined.shape or real.ndim != 2 or len(names) != len(real):
        raise ValueError(f"real and imagined must both be (policies, episodes) with {len(names)} policies; got {real.shape}, {imagined.shape}.")
    real_mean, imagined_mean = real.mean(1), imagined.mean(1)
    per_policy = {
        name: {"real_return": float(r), "imagined_return": float(i), "return_error": float(i - r),
               "abs_episode_error": float(np.abs(imagined[p] - real[p]).mean())}
        for p, (name, r, i) in enumerate(zip(names, real_mean, imagined_mean))
    }
    return {
        "policies": per_policy,
        "pearson_r": pearson(real_mean, imagined_mean),
        "spearman_rho": spearman(real_mean, imagined_mean),
        "mmrv": mmrv(real_mean, imagined_mean),
        "episode_pearson_r": pearson(real.ravel(), imagined.ravel()),
    }
