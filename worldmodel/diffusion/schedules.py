"""Sigma schedules for sampling: decreasing noise levels ending with 0."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def karras_sigmas(steps: int, sigma_min: float = 2e-3, sigma_max: float = 5.0, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022) schedule: `steps` levels from sigma_max to sigma_min, spaced in sigma^(1/rho), then 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_rho = 1.0 / rho
    sigmas = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).float()


def cosine_sigmas(steps: int, sigma_min: float = 2e-3, sigma_max: float = 5.0) -> Tensor:
    """Cosine schedule (iDDPM's alpha_bar = cos^2(pi t / 2), i.e. sigma = tan(pi t / 2)), uniform in t, then 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    t = torch.linspace(math.atan(sigma_max), math.atan(sigma_min), steps, dtype=torch.float64)
    return torch.cat([t.tan(), torch.zeros(1, dtype=torch.float64)]).float()


SCHEDULES = {"karras": karras_sigmas, "cosine": cosine_sigmas}


def make_sigmas(schedule: str, steps: int, **kwargs) -> Tensor:
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown sigma schedule {schedule!r}. Known: {sorted(SCHEDULES)}.")
    return SCHEDULES[schedule](steps, **kwargs)
