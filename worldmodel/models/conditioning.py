"""Per-frame conditioning vectors: the frame's noise level and the action that led to it."""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from worldmodel.models.blocks import FourierFeatures


class ActionEncoder(nn.Module):
    """Embeds continuous actions of a box space, described in plain types (checkpoints store it so).

    space: {"type": "box", "low": [...], "high": [...]}: actions are rescaled to [-1, 1] from the
    bounds (infinite bounds pass through). actions: (B, T, A) -> (B, T, dim).
    """

    def __init__(self, space: dict[str, Any], dim: int):
        super().__init__()
        if space.get("type") != "box":
            raise ValueError(f"Unsupported action space {space.get('type')!r}: rollout files store continuous (box) actions.")
        low = torch.as_tensor(space["low"], dtype=torch.float32).flatten()
        high = torch.as_tensor(space["high"], dtype=torch.float32).flatten()
        finite = torch.isfinite(low) & torch.isfinite(high)
        self.register_buffer("center", torch.where(finite, (high + low) / 2, torch.zeros_like(low)))
        self.register_buffer("half_range", torch.where(finite, (high - low) / 2, torch.ones_like(low)))
        self.embed = nn.Sequential(nn.Linear(len(low), dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, actions: Tensor) -> Tensor:
        return self.embed((actions.float() - self.center) / self.half_range)


class FrameConditioning(nn.Module):
    """cond[b, t] = MLP(noise level of frame t) + embedding of the action that led to frame t.

    The first frame of a window has no action inside the window and gets a learned vector.
    c_noise: (B, T); actions: (B, T-1, A) -> (B*T, dim).
    """

    def __init__(self, action_space: dict[str, Any], dim: int):
        super().__init__()
        self.noise = nn.Sequential(FourierFeatures(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.action = ActionEncoder(action_space, dim)
        self.no_action = nn.Parameter(torch.zeros(dim))

    def forward(self, c_noise: Tensor, actions: Tensor) -> Tensor:
        b = c_noise.shape[0]
        previous = torch.cat([self.no_action.expand(b, 1, -1), self.action(actions)], dim=1)
        return rearrange(self.noise(c_noise) + previous, "b t d -> (b t) d")
