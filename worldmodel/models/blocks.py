"""Building blocks shared by the denoisers: noise/action embeddings, adaptive GroupNorm res-blocks,
attention over space and over time."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def group_norm(channels: int, affine: bool = True) -> nn.GroupNorm:
    """GroupNorm with the most groups (up to 32) that divide `channels`."""
    groups = max(g for g in range(1, 33) if channels % g == 0)
    return nn.GroupNorm(groups, channels, affine=affine)


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar (the EDM c_noise): (...,) -> (..., dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("weight", torch.randn(1, dim // 2))

    def forward(self, x: Tensor) -> Tensor:
        f = 2 * math.pi * x.unsqueeze(-1).float() * self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


def full_precision(device: torch.device | str):
    """A context with autocast off, for the conditioning path: it multiplies a few vectors by
    weights that bf16 autocast would recast on every call, a copy that costs more than the fp32
    product (a single world's step is overhead-bound: docs/benchmarks.md)."""
    return torch.autocast(torch.device(device).type, enabled=False)


# PyTorch's channels-last GroupNorm on CPU is up to 10x slower than the contiguous one on small maps
# (bf16, (1, 64, 16, 16): 152 vs 11 us; at 64x64 both take ~40 us): below this many pixels the round
# trip through the contiguous layout pays.
SMALL_MAP = 16 * 16


def is_channels_last(x: Tensor) -> bool:
    """Laid out channels-last and not also contiguous (a map of one pixel, or one channel, is both)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class AdaGroupNorm(nn.Module):
    """GroupNorm whose scale and shift are per sample: the network's `Modulation` of its conditioning."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels, affine=False)

    def forward(self, x: Tensor, modulation: Tensor) -> Tensor:
        """x: (N, C, H, W), modulation: (N, 2C) fp32, scales then shifts -> (N, C, H, W) in x's dtype and memory format."""
        scale, shift = modulation.chunk(2, dim=1)  # not einops: ~10 us a call, 44 calls a step
        return self.modulated_norm(x, (1 + scale).to(x.dtype), shift.to(x.dtype))

    def modulated_norm(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """GroupNorm of each sample, then its own affine: norm(x) * weight + bias; weight, bias: (N, C)."""
        n, c, h, w = x.shape
        if is_channels_last(x):
            if h * w <= SMALL_MAP:
                return self.modulated_norm(x.contiguous(), weight, bias).contiguous(memory_format=torch.channels_last)
            # N channels-last samples are no one sample's view: each is normed with its own affine
            # (1.2-3x faster at 64x64 than GroupNorm then a broadcast addcmul over the batch)
            return torch.cat([F.group_norm(x[i : i + 1], self.norm.num_groups, weight[i], bias[i], self.norm.eps) for i in range(n)])
        # N samples of C channels in G groups are one sample of N*C channels in N*G groups: the
        # per-sample affine becomes GroupNorm's own per-channel one, one pass over x instead of three.
        folded = F.group_norm(x.reshape(1, n * c, h, w), n * self.norm.num_groups, weight.reshape(-1), bias.reshape(-1), self.norm.eps)
        return folded.view_as(x)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with adaptive GroupNorm; x: (N, C, H, W). Its norms' scales and shifts are
    the `columns` of the network's modulation (N, M) that `Modulation` assigns it."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1 = AdaGroupNorm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # starts as identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.modulation_sizes = (2 * in_ch, 2 * out_ch)
        self.columns = slice(0, sum(self.modulation_sizes))

    def forward(self, x: Tensor, modulation: Tensor) -> Tensor:
        m1, m2 = modulation[:, self.columns].split(self.modulation_sizes, dim=1)
        h = self.conv1(F.silu(self.norm1(x, m1), inplace=True))
        h = self.conv2(F.silu(self.norm2(h, m2), inplace=True))
        return h.add_(self.skip(x))


class Modulation(nn.Module):
    """Every adaptive norm's scale and shift from the conditioning vector, as one fp32 linear map for
    the whole network: one matmul instead of one per norm (44 in the default U-Net, ~2.5 ms of a single
    world's step on a 2-core CPU, and 44 kernel launches on a GPU). Each res-block reads its `columns`.
    The weight is stored (D, M), input-major: a batch of one streams its ~7 MB from memory 3x faster
    than in nn.Linear's (M, D) (216 vs 630 us on this CPU, caches cold as after a U-Net pass).

    `add_to(net, cond_dim)` builds it over `net`'s res-blocks and lets `net` load state dicts written
    with one projection per norm (`<block>.norm1.proj.weight`, ...), as checkpoints before it were.
    """

    def __init__(self, blocks: list[ResBlock], cond_dim: int):
        super().__init__()
        start = 0
        for block in blocks:
            block.columns = slice(start, start + sum(block.modulation_sizes))
            start = block.columns.stop
        bound = cond_dim**-0.5  # nn.Linear's initialisation
        self.weight = nn.Parameter(torch.empty(cond_dim, start).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(start).uniform_(-bound, bound))

    def forward(self, cond: Tensor) -> Tensor:
        """cond: (N, D) -> (N, M) fp32."""
        with full_precision(cond.device):
            return torch.addmm(self.bias, cond.float(), self.weight)

    @classmethod
    def add_to(cls, net: nn.Module, cond_dim: int) -> None:
        named = [(name, m) for name, m in net.named_modules() if isinstance(m, ResBlock)]
        net.modulation = cls([m for _, m in named], cond_dim)
        net.register_load_state_dict_pre_hook(partial(_merge_projections, [name for name, _ in named]))


def _merge_projections(blocks: list[str], net: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """A state dict with one projection per norm (older checkpoints): theirs stacked as the one `Modulation`'s."""
    old = [f"{prefix}{block}.{norm}.proj." for block in blocks for norm in ("norm1", "norm2")]
    if not all(f"{key}weight" in state_dict and f"{key}bias" in state_dict for key in old):
        return
    state_dict[f"{prefix}modulation.weight"] = torch.cat([state_dict.pop(f"{key}weight") for key in old]).t()
    state_dict[f"{prefix}modulation.bias"] = torch.cat([state_dict.pop(f"{key}bias") for key in old])


class SpatialAttention(nn.Module):
    """Self-attention over the H*W positions of each frame; x: (N, C, H, W)."""

    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "n (three heads d) h w -> three n heads (h w) d", three=3, heads=self.heads)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(rearrange(y, "n heads (h w) d -> n (heads d) h w", h=h, w=w))


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal softmax attention over a short sequence, computed directly: q, k, v (N, heads, T, d) ->
    (N, heads, T, d), position t attending to positions <= t.

    Temporal attention runs one tiny sequence (T = the window's frames) per pixel and batch row:
    N = B*H*W reaches 10^5-10^6. Fused scaled_dot_product_attention kernels fail there on CUDA
    (cuDNN's graph, and the memory-efficient kernel's grid limit); the T x T scores are small, so
    plain batched matrix products run on any backend and batch size.
    """
    t = q.shape[-2]
    scores = torch.einsum("nhtd,nhsd->nhts", q, k) * q.shape[-1] ** -0.5
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    weights = scores.float().masked_fill(future, float("-inf")).softmax(-1).to(v.dtype)
    return torch.einsum("nhts,nhsd->nhtd", weights, v)


class TemporalAttention(nn.Module):
    """Causal self-attention across the T frames at every pixel: frame t sees frames <= t.

    x: (B*T, C, H, W) with frames of a window consecutive; frame positions enter as a learned
    embedding added to the attention input.
    """

    def __init__(self, channels: int, max_frames: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = group_norm(channels)
        self.position = nn.Parameter(torch.zeros(max_frames, channels))
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.norm(x), "(b t) c h w -> (b h w) t c", t=frames) + self.position[:frames]
        q, k, v = rearrange(self.qkv(tokens), "n t (three heads d) -> three n heads t d", three=3, heads=self.heads)
        y = self.out(rearrange(causal_attention(q, k, v), "n heads t d -> n t (heads d)"))
        return x + rearrange(y, "(b h w) t c -> (b t) c h w", h=h, w=w)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
