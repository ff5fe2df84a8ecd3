"""Metrics of imagined frames against real ones, and of imagined policy scores against real ones.

Frame metrics take uint8 frames (..., H, W, 3) and return one value per frame; rank metrics take
one score per policy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from worldmodel.frames import psnr

__all__ = ["flicker", "mmrv", "pearson", "psnr", "ranks", "spearman", "ssim"]


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a_u8: Tensor, b_u8: Tensor) -> Tensor:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
    valid region) per frame, averaged over RGB channels: (..., H, W, 3) x 2 -> (...). 1 where identical."""
    lead = a_u8.shape[:-3]
    a = rearrange(a_u8.float(), "... h w c -> (...) c h w")
    b = rearrange(b_u8.float(), "... h w c -> (...) c h w")
    c = a.shape[1]
    window = _gaussian_window().to(a.device).expand(c, 1, -1, -1)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, window, groups=c)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3)).reshape(lead)


def flicker(imagined_u8: Tensor, real_u8: Tensor, previous_imagined: Tensor, previous_real: Tensor) -> Tensor:
    """Temporal error per frame: mean |(x_t - x_{t-1}) - (y_t - y_{t-1})| over pixels, in 0-255 units.

    Frame-to-frame change that the real video does not have (jitter, popping) counts; a model that
    is wrong but changes exactly as reality does scores 0. Shapes (..., H, W, 3) -> (...).
    """
    change_imagined = imagined_u8.float() - previous_imagined.float()
    change_real = real_u8.float() - previous_real.float()
    return (change_imagined - change_real).abs().flatten(-3).mean(-1)


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties given their mean rank."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    for value in np.unique(x):
        tied = x == value
        r[tied] = r[tied].mean()
    return r


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; nan when either side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the tie-averaged ranks)."""
    return pearson(ranks(x), ranks(y))


def mmrv(real: np.ndarray, imagined: np.ndarray) -> float:
    """Mean Maximum Rank Violation (SIMPLER, Li et al. 2024): for each policy i, the largest
    |real_i - real_j| over the policies j whose order the imagined scores flip; averaged over i.
    0 when the imagined scores order every pair as the real ones do; in the units of the scores."""
    real, imagined = np.asarray(real, float), np.asarray(imagined, float)
    flipped = (imagined[:, None] < imagined[None, :]) != (real[:, None] < real[None, :])
    violation = np.abs(real[:, None] - real[None, :]) * flipped
    return float(violation.max(axis=1).mean()) if len(real) else float("nan")
