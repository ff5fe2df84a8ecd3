"""Frame conversions between the edges (uint8 HWC) and the model (float in [-1, 1], CHW)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def to_model(frames_u8: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """(..., T, H, W, C) uint8 -> (..., T, C, H, W) float in [-1, 1]."""
    return rearrange(frames_u8, "... h w c -> ... c h w").to(dtype) / 127.5 - 1.0


def to_uint8(frames: Tensor) -> Tensor:
    """(..., T, C, H, W) float in [-1, 1] -> (..., T, H, W, C) uint8 (rounded, clipped)."""
    return rearrange(((frames.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8), "... c h w -> ... h w c")


def psnr(a_u8: Tensor, b_u8: Tensor) -> Tensor:
    """PSNR in dB between uint8 frames, per frame over the last three axes; inf where identical."""
    mse = (a_u8.float() - b_u8.float()).pow(2).flatten(-3).mean(-1)
    return 10 * torch.log10(255.0**2 / mse)
