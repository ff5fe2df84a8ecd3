"""The denoiser registry.

A denoiser is an `nn.Module` built by `builder(action_space, context, target, **kwargs)` whose
forward is

    forward(x: (B, T, C, H, W) scaled noisy frames, c_noise: (B, T) per-frame noise embeddings,
            actions: (B, T-1, A), outputs_from: int, **conditioning) -> (B, T, C, H, W)

(T = context + target; rows before `outputs_from` may be zeros). kwargs are the model config's
keys other than `architecture` and `reward_channels` (configs/model/<name>.yaml), plus what the
spec derives for it (`state_dim`, `pose_channels`, `image_channels`): accept what you do not use.

conditioning holds what the class attribute `reads` names (default: nothing), built from the
window's simulator states by `worldmodel.denoising.Conditioner` where the model has them:
"states", (B, T, state_dim) the state track's features of every frame, and "pose", (B, n,
pose_channels, H, W) pose maps in [0, 1] of the window's last n = `pose_frames` frames (class
attribute; None: all T). A denoiser that reads neither trains and imagines under any config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from worldmodel.registry import Registry

DenoiserBuilder = Callable[..., nn.Module]  # (action_space, context, target, **kwargs) -> nn.Module
DENOISERS: Registry[DenoiserBuilder] = Registry("denoiser architecture")


def build_denoiser(architecture: str, action_space: dict[str, Any], context: int, target: int, **kwargs: Any) -> nn.Module:
    """The denoiser network `architecture` (a name in DENOISERS) for windows of `context + target` frames."""
    return DENOISERS.get(architecture)(action_space, context, target, **kwargs)
