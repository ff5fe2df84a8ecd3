"""The space-time U-Net denoiser: 2D res-blocks within frames, causal attention across frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from worldmodel.models.blocks import Downsample, Modulation, ResBlock, SpatialAttention, TemporalAttention, Upsample, group_norm
from worldmodel.models.conditioning import FrameConditioning, check_pose
from worldmodel.models.registry import DENOISERS


class SpaceTimeUNet(nn.Module):
    """Denoises every frame of a window given all earlier ones.

    Each level: `blocks` res-blocks (adaptive GroupNorm on the frame's noise level + action) per
    frame, then causal temporal self-attention across the window's frames at every pixel (a
    frame never sees later ones) on levels >= `temporal_from_level` (full-resolution temporal
    attention cost more than all convolutions on CPU); spatial self-attention at the lowest
    resolution.

    forward(x: (B, T, C, H, W) preconditioned frames, c_noise: (B, T), actions: (B, T-1, A),
    states: (B, T, state_dim) standardised state features of every frame (state_dim > 0 only),
    pose: (B, T, pose_channels, H, W) pose maps of every frame (`worldmodel.pose`; input channels
    next to each frame; pose_channels > 0 only)) -> (B, T, C, H, W), the network output F of every frame (the EDM wrapper keeps the targets').
    """

    def __init__(
        self,
        action_space: dict[str, Any],
        max_frames: int,
        image_channels: int = 3,
        channels: Sequence[int] = (64, 64, 64, 64),
        blocks: int = 2,
        cond_dim: int = 256,
        temporal_from_level: int = 1,
        gradient_checkpointing: bool = False,
        state_dim: int = 0,
        pose_channels: int = 0,
    ):
        super().__init__()
        self.max_frames = max_frames
        self.pose_channels = pose_channels
        self.gradient_checkpointing = gradient_checkpointing
        self.cond = FrameConditioning(action_space, cond_dim, state_dim)
        self.stem = nn.Conv2d(image_channels + pose_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [channels[0]]
        ch = channels[0]
        for level, out_ch in enumerate(channels):
            for _ in range(blocks):
                self.down.append(ResBlock(ch, out_ch))
                ch = out_ch
                skips.append(ch)
            if level >= temporal_from_level:
                self.down.append(TemporalAttention(ch, max_frames))
            if level < len(channels) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        self.middle = nn.ModuleList([ResBlock(ch, ch), SpatialAttention(ch), TemporalAttention(ch, max_frames), ResBlock(ch, ch)])
        self.up = nn.ModuleList()
        for level, out_ch in reversed(list(enumerate(channels))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), out_ch))
                ch = out_ch
            if level >= temporal_from_level:
                self.up.append(TemporalAttention(ch, max_frames))
            if level > 0:
                self.up.append(Upsample(ch))
        self.head = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, image_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        Modulation.add_to(self, cond_dim)
        self._last_temporal_up = max((i for i, layer in enumerate(self.up) if isinstance(layer, TemporalAttention)), default=-1)

    def _run_layer(self, layer: nn.Module, h: Tensor, modulation: Tensor, frames: int) -> Tensor:
        if isinstance(layer, ResBlock):
            if self.gradient_checkpointing and self.training:
                return checkpoint(layer, h, modulation, use_reentrant=False)
            return layer(h, modulation)
        if isinstance(layer, TemporalAttention):
            return layer(h, frames)
        return layer(h)

    reads = ("states", "pose")  # the conditioning it is given (models/registry.py)
    pose_frames = None  # pose maps of every window frame

    def forward(
        self, x: Tensor, c_noise: Tensor, actions: Tensor, outputs_from: int = 0, states: Tensor | None = None, pose: Tensor | None = None
    ) -> Tensor:
        """outputs_from: frames before it (context) get a zero output. Past the last temporal
        attention, a frame's features no longer reach other frames, so the rest of the decoder runs
        on the output frames only (at K=4, F=1 this skips ~40 % of the work)."""
        b, t = x.shape[:2]
        if t > self.max_frames:
            raise ValueError(f"window of {t} frames, the model was built for at most {self.max_frames}.")
        modulation = self.modulation(self.cond(c_noise, actions, states))  # (B*T, M): per frame
        check_pose(self.pose_channels, pose, t)
        if pose is not None:
            x = torch.cat([x, pose.to(x.dtype)], dim=2)
        h = self.stem(rearrange(x, "b t c h w -> (b t) c h w"))
        skips = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, modulation, t)
            if not isinstance(layer, TemporalAttention):
                skips.append(h)
        for layer in self.middle:
            h = self._run_layer(layer, h, modulation, t)
        frames = t
        for i, layer in enumerate(self.up):
            if i == self._last_temporal_up + 1 and outputs_from > 0:
                keep = lambda v: rearrange(rearrange(v, "(b t) ... -> b t ...", b=b)[:, outputs_from:], "b t ... -> (b t) ...")  # noqa: E731
                h, modulation, skips, frames = keep(h), keep(modulation), [keep(s) for s in skips], t - outputs_from
            if isinstance(layer, ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run_layer(layer, h, modulation, frames)
        out = rearrange(self.head(h), "(b t) c h w -> b t c h w", b=b)
        if frames < t:
            out = torch.cat([out.new_zeros(b, t - frames, *out.shape[2:]), out], dim=1)
        return out


@DENOISERS.register("spacetime")
def build_spacetime(action_space: dict[str, Any], context: int, target: int, **kwargs: Any) -> SpaceTimeUNet:
    return SpaceTimeUNet(action_space, max_frames=context + target, **kwargs)
