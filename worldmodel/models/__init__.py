"""Denoiser networks and the reward/termination head. Needs torch and einops only.

Denoisers register themselves in DENOISERS by name (see `worldmodel.models.registry` for the
protocol); importing this package imports all of its modules, so a new denoiser is one file here
plus one config in configs/model/.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from worldmodel.models.framestack import FrameStackUNet
from worldmodel.models.registry import DENOISERS, build_denoiser
from worldmodel.models.reward_head import RewardTerminationHead
from worldmodel.models.spacetime import SpaceTimeUNet
from worldmodel.models.state_dynamics import StateDynamics, build_dynamics
from worldmodel.registry import import_submodules

import_submodules(__name__, __path__)


def build_networks(
    denoiser: dict[str, Any], reward_head: dict[str, Any], action_space: dict[str, Any], context: int, target: int
) -> tuple[nn.Module, nn.Module]:
    """The denoiser ({"architecture": name, **kwargs}) and the reward/termination head (its kwargs)."""
    kwargs = {k: v for k, v in denoiser.items() if k != "architecture"}
    return build_denoiser(denoiser["architecture"], action_space, context, target, **kwargs), RewardTerminationHead(
        action_space, **reward_head
    )


__all__ = [
    "DENOISERS",
    "FrameStackUNet",
    "RewardTerminationHead",
    "SpaceTimeUNet",
    "StateDynamics",
    "build_denoiser",
    "build_dynamics",
    "build_networks",
]
