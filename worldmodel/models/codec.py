"""A frame codec for latent diffusion: frames <-> small latent maps the denoiser works on.

Each stride-2 level halves the resolution, so a 64x64x3 frame becomes a (latent_channels,
64 / 2**levels, 64 / 2**levels) latent: with 2 levels and 8 channels 2,048 numbers instead of
12,288, and the denoiser's convolutions run on 16x16 maps. The latents are
scaled to the diffusion's `sigma_data` (the `scale` buffer, set from the training frames after the
codec is fitted), so EDM's preconditioning holds as for frames in [-1, 1]. Trained alone, before the
denoiser (`worldmodel.training.codec`), then frozen; frames are decoded only where someone looks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.models.blocks import group_norm


def latent_shape(frame_shape: tuple[int, ...], codec: dict) -> tuple[int, int, int]:
    """(H, W, 3) frames -> (H/f, W/f, latent_channels), channels last like frames: what a latent
    model's denoiser sees (codec: `FrameCodec`'s keyword arguments, as in `ModelSpec.codec`)."""
    levels = len(codec["channels"]) - 1
    h, w, factor = int(frame_shape[0]), int(frame_shape[1]), 2**levels
    if h % factor or w % factor:
        raise ValueError(f"frames of {h}x{w} pixels do not fit a codec of {levels} levels: make them multiples of {factor}.")
    return h // factor, w // factor, int(codec["latent_channels"])


class PlainResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU, and the identity around them."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FrameCodec(nn.Module):
    """encode: frames (N, 3, H, W) in [-1, 1] -> latents (N, latent_channels, H/f, W/f), f = 2**levels,
    scaled to std `sigma_data`; decode: the inverse (not clamped).

    channels: the width at each resolution, full first: len(channels) - 1 stride-2 levels. Narrow at
    full resolution, where a convolution costs the most: every imagined frame is decoded once.
    """

    def __init__(self, latent_channels: int = 8, channels: Sequence[int] = (16, 32, 64), image_channels: int = 3):
        super().__init__()
        channels = [int(c) for c in channels]
        if latent_channels < 1 or len(channels) < 2 or min(channels) < 1:
            raise ValueError(
                f"a codec needs latent_channels >= 1 and two or more positive channel widths (one level or more), "
                f"got {latent_channels} and {channels}."
            )
        down: list[nn.Module] = [nn.Conv2d(image_channels, channels[0], 3, padding=1)]
        for ch, out in zip(channels[:-1], channels[1:]):
            down += [PlainResBlock(ch), nn.Conv2d(ch, out, 3, stride=2, padding=1)]
        self.encoder = nn.Sequential(
            *down, PlainResBlock(channels[-1]), group_norm(channels[-1]), nn.SiLU(), nn.Conv2d(channels[-1], latent_channels, 3, padding=1)
        )
        up: list[nn.Module] = [nn.Conv2d(latent_channels, channels[-1], 3, padding=1), PlainResBlock(channels[-1])]
        for ch, out in zip(channels[:0:-1], channels[-2::-1]):
            up += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch, out, 3, padding=1), PlainResBlock(out)]
        self.decoder = nn.Sequential(*up, group_norm(channels[0]), nn.SiLU(), nn.Conv2d(channels[0], image_channels, 3, padding=1))
        self.register_buffer("scale", torch.ones(()))  # latent std -> sigma_data: set once the codec is fitted

    def encode(self, frames: Tensor) -> Tensor:
        return self.encoder(frames) * self.scale

    def decode(self, latents: Tensor) -> Tensor:
        return self.decoder(latents / self.scale)

    def loss(self, frames: Tensor) -> Tensor:
        """Reconstruction error of frames (N, 3, H, W) in [-1, 1]: squared (what PSNR measures) plus
        absolute (less forgiving of the many small errors a blurred thin edge, such as an arm's, makes)."""
        out = self.decoder(self.encoder(frames)).float()
        return F.mse_loss(out, frames) + F.l1_loss(out, frames)
