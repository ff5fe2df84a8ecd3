"""Draws a simulator state as an image the denoiser can read pixel by pixel.

A state given only as one global conditioning vector is ignored: in teacher-forced training the
real context frames and the actions already fix the next frame, and a global vector must be
turned into a pose at every pixel by the U-Net's norms. Measured (docs/studies.md): frames drawn with the
arm's angles shifted by 1 rad moved by 0.1-0.3 grey levels. This renderer is an implicit network
over pixel coordinates and the state's features (is this pixel on the arm, given its angles?),
so the pose arrives spatially aligned with the frame being denoised, as input channels; its first
three channels are trained to be the frame itself (`render_loss`), which teaches it the pose fast.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


class StateRenderer(nn.Module):
    """state features (B, state_dim) -> (B, channels, H, W) maps; channels [0:3] are an RGB guess
    of the frame in [-1, 1] units (`render_loss`), the rest are free features.

    Per pixel: an MLP of Fourier features of the pixel's (x, y) plus a linear map of the state,
    computed as 1x1 convolutions over the whole image at once.
    """

    def __init__(self, state_dim: int, channels: int = 16, hidden: int = 64, frequencies: int = 4):
        super().__init__()
        if channels < 3:
            raise ValueError(f"the state renderer's first 3 channels are its RGB guess: channels must be >= 3, got {channels}.")
        self.frequencies = frequencies
        self.coords = nn.Conv2d(2 + 4 * frequencies, hidden, 1)
        self.state = nn.Linear(state_dim, hidden)
        self.body = nn.Sequential(
            nn.SiLU(), nn.Conv2d(hidden, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, channels, 1)
        )

    def grid(self, size: tuple[int, int], device) -> Tensor:
        """(1, 2 + 4 f, H, W): pixel x, y in [-1, 1] and their sines and cosines at f octaves."""
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size[0], device=device), torch.linspace(-1, 1, size[1], device=device), indexing="ij")
        octaves = math.pi * 2.0 ** torch.arange(self.frequencies, device=device)
        scaled = rearrange(torch.stack([xs, ys]), "s h w -> s 1 h w") * rearrange(octaves, "f -> 1 f 1 1")
        return torch.cat([torch.stack([xs, ys]), rearrange(torch.cat([scaled.sin(), scaled.cos()]), "s f h w -> (s f) h w")])[None]

    def forward(self, states: Tensor, size: tuple[int, int]) -> Tensor:
        """states (B, state_dim), size (H, W) -> (B, channels, H, W)."""
        h = self.coords(self.grid(size, states.device)) + self.state(states)[..., None, None]
        return self.body(h)

    def render_loss(
        self, states: Tensor, frames: Tensor, background: Tensor | None = None, foreground_weight: float = 50.0, threshold: float = 0.1
    ) -> Tensor:
        """MSE of the RGB guess for states (B, state_dim) against the real frames (B, 3, H, W) in [-1, 1].

        background (3, H, W): the data's mean frame (`data.stats.mean_frame`); pixels that differ from
        it by `threshold` or more (the arm, the target: a few percent of the frame) weigh
        1 + foreground_weight. Unweighted, a thin arm is so small a share of the error that the
        renderer learns the floor and never the arm (measured: 800 steps drew the mean frame)."""
        error = (self(states, tuple(frames.shape[-2:]))[:, :3].float() - frames.float()).pow(2)
        if background is None:
            return error.mean()
        weight = 1 + foreground_weight * ((frames.float() - background).abs().mean(1, keepdim=True) >= threshold)
        return (error * weight).sum() / (weight.sum() * 3)
