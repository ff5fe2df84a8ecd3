"""An auxiliary training objective: read the target frame's simulator state off the denoiser's bottleneck.

Pixel losses give a thin moving arm a tiny share of the error, so the denoiser learns the arm's
next pose slowly. Regressing the recorded state (sin/cos of qpos, qvel) of the frame being
denoised from the bottleneck features asks the encoder to carry that pose explicitly: from the
noisy target at low noise (perception), from context and actions alone at high noise (dynamics).
The head is used in training only; the exported model has no trace of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from einops import rearrange
from torch import Tensor, nn

from worldmodel.models.blocks import group_norm
from worldmodel.states import state_features


class StateHead(nn.Module):
    """Bottleneck features (N, C, h, w) -> (N, S) standardised state features.

    mean, std: (S,) statistics of `state_features` over the training file (`data.stats.state_stats`).
    """

    def __init__(self, channels: int, resolution: int, mean: Sequence[float], std: Sequence[float], hidden: int = 256):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.net = nn.Sequential(
            group_norm(channels),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(channels * resolution**2, hidden),
            nn.SiLU(),
            nn.Linear(hidden, len(mean)),
        )

    def loss(self, features: Tensor, qpos: Tensor, qvel: Tensor) -> Tensor:
        """features: (B*F, C, h, w) of the F target frames; qpos: (B, F, nq), qvel: (B, F, nv)."""
        target = (state_features(qpos, qvel) - self.mean) / self.std
        return (self.net(features.float()) - rearrange(target, "b f s -> (b f) s")).pow(2).mean()


@contextmanager
def bottleneck_features(denoiser: nn.Module) -> Iterator[list[Tensor]]:
    """Collects the output of the denoiser's bottleneck (the last layer of `denoiser.middle`) on
    each forward pass inside the block: (B*T, C, h, w) for a window of T frames, (B, C, h, w) for a
    denoiser that stacks its frames as channels."""
    middle = getattr(denoiser, "middle", None)
    if not isinstance(middle, nn.ModuleList):
        raise ValueError(
            f"state_weight > 0 needs a denoiser with a `middle` stage (framestack, spacetime); {type(denoiser).__name__} has none."
        )
    captured: list[Tensor] = []
    handle = middle[-1].register_forward_hook(lambda module, args, out: captured.append(out))
    try:
        yield captured
    finally:
        handle.remove()
