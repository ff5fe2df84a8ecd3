"""The DIAMOND-style baseline: context frames stacked as input channels of a 2D U-Net."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from worldmodel.models.blocks import (
    Downsample,
    FourierFeatures,
    Modulation,
    ResBlock,
    SpatialAttention,
    Upsample,
    full_precision,
    group_norm,
)
from worldmodel.models.conditioning import ActionEncoder, check_pose, check_states, state_encoder
from worldmodel.models.registry import DENOISERS


class FrameStackUNet(nn.Module):
    """Predicts the last frame of a window of `context + 1` frames; context frames are input only.

    Conditioning (adaptive GroupNorm): the target's noise level, the context frames' (augmentation)
    noise level, the `context` actions of the window and, with a state track (state_dim > 0), the
    states of the last context frame and of the target, each embedded and summed. Pose maps
    (`worldmodel.pose`: the state's bodies drawn where the camera sees them, pose_channels per
    frame, 0: none) of the last context frame and the target (`pose_frames`) enter as input
    channels next to the frames, aligned with the frame being denoised.

    patch > 1 (space to depth): the stacked input's patch x patch pixel blocks become channels
    (`pixel_unshuffle`) before the stem and the output's channels become blocks again, so the U-Net
    runs at (H/patch, W/patch): patch**2 times fewer positions for its convolutions, nothing lost
    on the way in or out (Simple Diffusion's and DiT's patching, without a learned codec).

    forward(x: (B, K+1, C, H, W), c_noise: (B, K+1), actions: (B, K, A), states: (B, K+1, state_dim)
    standardised state features or None, pose: (B, 2, pose_channels, H, W) in [0, 1] or None)
    -> (B, K+1, C, H, W), zeros for the context frames.
    """

    def __init__(
        self,
        action_space: dict[str, Any],
        context: int,
        image_channels: int = 3,
        channels: Sequence[int] = (48, 64, 64, 64),
        blocks: int | Sequence[int] = 2,
        cond_dim: int = 256,
        gradient_checkpointing: bool = False,
        state_dim: int = 0,
        pose_channels: int = 0,
        patch: int = 1,
    ):
        super().__init__()
        if patch < 1:
            raise ValueError(f"patch must be >= 1 (1: the U-Net runs at full resolution), got {patch}.")
        blocks = [blocks] * len(channels) if isinstance(blocks, int) else list(blocks)
        if len(blocks) != len(channels) or min(blocks) < 1:
            raise ValueError(f"blocks must be one count >= 1 or one per level ({len(channels)} levels), got {blocks}.")
        self.context, self.patch, self.levels = context, patch, len(channels)
        self.gradient_checkpointing = gradient_checkpointing
        self.noise = nn.Sequential(FourierFeatures(cond_dim), nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.context_noise = nn.Sequential(FourierFeatures(cond_dim), nn.Linear(cond_dim, cond_dim))
        self.action = ActionEncoder(action_space, cond_dim)
        self.action_mix = nn.Linear(context * cond_dim, cond_dim)
        self.state = state_encoder(2 * state_dim, cond_dim)
        self.pose_channels = pose_channels
        inputs = (context + 1) * image_channels + self.pose_frames * pose_channels
        self.stem = nn.Conv2d(inputs * patch**2, channels[0], 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        skips, ch = [channels[0]], channels[0]
        for level, out_ch in enumerate(channels):
            for _ in range(blocks[level]):
                self.down.append(ResBlock(ch, out_ch))
                ch = out_ch
                skips.append(ch)
            if level < len(channels) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        self.middle = nn.ModuleList([ResBlock(ch, ch), SpatialAttention(ch), ResBlock(ch, ch)])
        for level, out_ch in reversed(list(enumerate(channels))):
            for _ in range(blocks[level] + 1):
                self.up.append(ResBlock(ch + skips.pop(), out_ch))
                ch = out_ch
            if level > 0:
                self.up.append(Upsample(ch))
        self.head = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, image_channels * patch**2, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        Modulation.add_to(self, cond_dim)

    reads = ("states", "pose")  # the conditioning it is given (models/registry.py)
    pose_frames = 2  # the window's last frames whose pose maps it reads: the last context frame and the target

    def _run_layer(self, layer: nn.Module, h: Tensor, modulation: Tensor) -> Tensor:
        if not isinstance(layer, ResBlock):
            return layer(h)
        if self.gradient_checkpointing and self.training:
            return checkpoint(layer, h, modulation, use_reentrant=False)
        return layer(h, modulation)

    def forward(
        self, x: Tensor, c_noise: Tensor, actions: Tensor, outputs_from: int = 0, states: Tensor | None = None, pose: Tensor | None = None
    ) -> Tensor:
        """outputs_from: accepted for the shared interface; the output is always the last frame's."""
        b, t = x.shape[:2]
        if t != self.context + 1:
            raise ValueError(f"framestack predicts one frame from {self.context} context frames: got a window of {t}.")
        multiple = self.patch * 2 ** (self.levels - 1)
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"frames of {tuple(x.shape[-2:])} pixels do not fit this U-Net: with patch {self.patch} and {self.levels} "
                f"levels their height and width must be multiples of {multiple}."
            )
        check_states(self.state, states)
        check_pose(self.pose_channels, pose, self.pose_frames)
        with full_precision(x.device):
            cond = (
                self.noise(c_noise[:, -1].float())
                + self.context_noise(c_noise[:, :-1].float().mean(dim=1))
                + self.action_mix(rearrange(self.action(actions), "b k d -> b (k d)"))
            )
            if states is not None:  # where the arm was and where it must be drawn
                cond = cond + self.state(rearrange(states[:, -2:].float(), "b t s -> b (t s)"))
        modulation = self.modulation(cond)
        stacked = rearrange(x, "b t c h w -> b (t c) h w")
        if pose is not None:
            stacked = torch.cat([stacked, rearrange(pose, "b t p h w -> b (t p) h w").to(stacked.dtype)], dim=1)
        h = self.stem(F.pixel_unshuffle(stacked, self.patch) if self.patch > 1 else stacked)
        skips = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, modulation)
            skips.append(h)
        for layer in self.middle:
            h = self._run_layer(layer, h, modulation)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run_layer(layer, h, modulation)
        target = self.head(h)
        if self.patch > 1:
            target = F.pixel_shuffle(target, self.patch)
        return torch.cat([torch.zeros_like(x[:, :-1]), target.unsqueeze(1)], dim=1)


@DENOISERS.register("framestack")
def build_framestack(action_space: dict[str, Any], context: int, target: int, **kwargs: Any) -> FrameStackUNet:
    if target != 1:
        raise ValueError(f"framestack predicts one frame at a time (target=1), got target={target}.")
    return FrameStackUNet(action_space, context=context, **kwargs)
