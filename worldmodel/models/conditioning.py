"""Per-frame conditioning vectors: the frame's noise level and the action that led to it."""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from worldmodel.models.blocks import FourierFeatures, full_precision


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


def state_encoder(state_dim: int, dim: int) -> nn.Module | None:
    """Embeds standardised state features (`StateDynamics.features`) of the frames a denoiser
    draws; None for a model without a state track (state_dim 0)."""
    return nn.Sequential(nn.Linear(state_dim, dim), nn.SiLU(), nn.Linear(dim, dim)) if state_dim else None


def check_states(encoder: nn.Module | None, states: Tensor | None) -> None:
    if (encoder is None) != (states is None):
        raise ValueError("states must be given exactly when the denoiser was built with state_dim > 0 (a model with a state track).")


def check_pose(channels: int, pose: Tensor | None, frames: int) -> None:
    """pose maps (B, frames, channels, H, W) must be given exactly when the denoiser reads them (channels > 0)."""
    if (pose is None) != (channels == 0) or (pose is not None and (pose.ndim != 5 or tuple(pose.shape[1:3]) != (frames, channels))):
        raise ValueError(
            f"this denoiser reads pose maps of {channels} channels for {frames} frames (0: none), got "
            f"{None if pose is None else tuple(pose.shape)}; WorldModel and the trainer draw them from the spec's pose."
        )


class FrameConditioning(nn.Module):
    """cond[b, t] = MLP(noise level of frame t) + embedding of the action that led to frame t
    (+ embedding of frame t's state, for a model with a state track: state_dim > 0).

    The first frame of a window has no action inside the window and gets a learned vector.
    c_noise: (B, T); actions: (B, T-1, A); states: (B, T, state_dim) or None -> (B*T, dim).
    """

    def __init__(self, action_space: dict[str, Any], dim: int, state_dim: int = 0):
        super().__init__()
        self.noise = nn.Sequential(FourierFeatures(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.action = ActionEncoder(action_space, dim)
        self.no_action = nn.Parameter(torch.zeros(dim))
        self.state = state_encoder(state_dim, dim)

    def forward(self, c_noise: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        check_states(self.state, states)
        b = c_noise.shape[0]
        with full_precision(c_noise.device):
            cond = self.noise(c_noise.float()) + torch.cat([self.no_action.expand(b, 1, -1), self.action(actions)], dim=1)
            if states is not None:
                cond = cond + self.state(states.float())
        return rearrange(cond, "b t d -> (b t) d")
