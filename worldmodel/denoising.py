"""One denoising step, written once: what the denoiser is conditioned on for a window, and
`D(x; sigma)` of the window's next frame for a sampler. Training (its rollout unrolling and the
conditioning of every loss window), imagination (`WorldModel.step`) and distillation all build
their steps here, so a model is sampled exactly as it was trained (tests/test_denoising.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from worldmodel.diffusion import EDM
from worldmodel.diffusion.samplers import Denoise
from worldmodel.models.state_dynamics import StateDynamics
from worldmodel.pose import PoseMaps


class Conditioner:
    """The denoiser's inputs beyond frames and actions, from a window's simulator states: "states",
    the state track's features of every frame (with a state track), and "pose", the pose maps of
    the window's last `pose_frames` frames (all if None) (with pose maps); of these, the ones the
    denoiser `reads` (its class attribute, models/registry.py). Training gives it the recorded
    states, imagination the window's states and the state track's next one.
    """

    def __init__(self, denoiser: nn.Module, dynamics: StateDynamics | None, pose_maps: PoseMaps | None):
        reads = set(getattr(denoiser, "reads", ()))
        self.dynamics = dynamics if "states" in reads else None
        self.pose_maps = pose_maps if "pose" in reads else None
        self.pose_frames = getattr(denoiser, "pose_frames", None)

    @property
    def reads_states(self) -> bool:
        """Whether this denoiser is given anything drawn from the window's states."""
        return self.dynamics is not None or self.pose_maps is not None

    def __call__(self, qpos: Tensor, qvel: Tensor, segments: Tensor | None = None) -> dict[str, Tensor]:
        """qpos (B, T, nq), qvel (B, T, nv): the window's frames' states; segments: their pose
        segments (B, T, P, 2, 2) where already placed (training's data loader), else placed here
        for the frames drawn only. Returns {"states": (B, T, S), "pose": (B, n, P, H, W)}, the keys
        the model has."""
        given = {}
        if self.dynamics is not None:
            given["states"] = self.dynamics.features(torch.cat([qpos, qvel], dim=-1))
        if self.pose_maps is not None:
            n = qpos.shape[1] if self.pose_frames is None else min(self.pose_frames, qpos.shape[1])
            given["pose"] = self.pose_maps.draw(segments[:, -n:] if segments is not None else self.pose_maps.segments(qpos[:, -n:]))
        return given


def next_frame_denoiser(
    edm: EDM,
    network: nn.Module,
    noisy_context: Tensor,
    context_sigma: Tensor,
    actions: Tensor,
    conditioning: dict[str, Tensor],
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> Denoise:
    """`x (B, 1, C, H, W) at sigma -> D(x; sigma)`, float32: the next frame of windows whose K context
    frames are `noisy_context` (B, K, C, H, W), noised to `context_sigma` (B,), under `actions`
    (B, K, A) and the window's `conditioning` (a `Conditioner`'s)."""
    b, k = noisy_context.shape[:2]

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        target = torch.as_tensor(sigma, dtype=context_sigma.dtype, device=context_sigma.device).reshape(-1, 1).expand(b, 1)
        sig = torch.cat([context_sigma[:, None].expand(b, k), target], dim=1)
        with autocast():
            out = edm.denoise(network, torch.cat([noisy_context, x], dim=1), sig, actions=actions, outputs_from=k, **conditioning)
        return out.float()

    return denoise
