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




def build_networks(model_cfg: dict[str, Any], action_space: dict[str, Any], context: int, target: int) -> tuple[nn.Module, nn.Module]:
    """The denoiser and the reward/termination head described by a model config (plain dict)."""
    denoiser = build_denoiser(
        model_cfg["architecture"],
        action_space,
        context,
        target,
        channels=tuple(model_cfg["channels"]),
        blocks=int(model_cfg["blocks"]),
        cond_dim=int(model_cfg["cond_dim"]),
        gradient_checkpointing=bool(model_cfg.get("gradient_checkpointing", False)),
        **({"temporal_from_level": int(model_cfg.get("temporal_from_level", 1))} if model_cfg["architecture"] == "spacetime" else {}),
    )
    reward_head = RewardTerminationHead(action_space, channels=int(model_cfg.get("reward_channels", 32)))
    return denoiser, reward_head


__all__ = ["ARCHITECTURES", "FrameStackUNet", "RewardTerminationHead", "SpaceTimeUNet", "build_denoiser", "build_networks"]
