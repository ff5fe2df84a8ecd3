"""The simulator state as networks read it."""

from __future__ import annotations

import torch


def state_features(qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
    """(..., nq), (..., nv) -> (..., 2 nq + nv): sin and cos of every position coordinate (a hinge's
    angle winds past 2 pi, which frames cannot show) and the velocities."""
    return torch.cat([qpos.sin(), qpos.cos(), qvel], dim=-1)
