"""Denoiser networks and the reward/termination head. Needs torch and einops only."""

from __future__ import annotations

from typing import Any

from torch import nn

from worldmodel.models.framestack import FrameStackUNet
from worldmodel.models.reward_head import RewardTerminationHead
from worldmodel.models.spacetime import SpaceTimeUNet

ARCHITECTURES = ("spacetime", "framestack")


def build_denoiser(architecture: str, action_space: dict[str, Any], context: int, target: int, **kwargs: Any) -> nn.Module:
    """The denoiser network for windows of `context + target` frames."""
    if architecture == "spacetime":
        return SpaceTimeUNet(action_space, max_frames=context + target, **kwargs)
    if architecture == "framestack":
        if target != 1:
            raise ValueError(f"framestack predicts one frame at a time (target=1), got target={target}.")
        return FrameStackUNet(action_space, context=context, **kwargs)
    raise ValueError(f"Unknown model architecture {architecture!r}. Known: {list(ARCHITECTURES)}.")


__all__ = ["ARCHITECTURES", "FrameStackUNet", "RewardTerminationHead", "SpaceTimeUNet", "build_denoiser"]
