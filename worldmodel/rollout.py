"""Imagination: the one place frames are generated.

`WorldModel.load(path)` rebuilds a trained model from its self-contained checkpoint;
`WorldModel.imagine(...)` rolls out any horizon for a batch of worlds by sliding a window of the
last K frames (real or generated) and their actions, sampling one new frame per step.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from worldmodel.checkpoint import load_checkpoint
from worldmodel.diffusion import EDM, make_sigmas, sample
from worldmodel.frames import to_model, to_uint8
from worldmodel.models import build_networks



@dataclass
class Imagined:
    """frames: (B, N, H, W, 3) uint8; rewards: (B, N) float32; termination_prob: (B, N) in [0, 1]."""

    frames: Tensor
    rewards: Tensor
    termination_prob: Tensor


@dataclass(frozen=True)
class SamplerConfig:
    """method: euler | heun | churn; steps; schedule: karras | cosine; context_sigma: the noise level
    context frames are given (and noised with) while sampling."""

    method: str = "euler"
    steps: int = 3
    schedule: str = "karras"
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    churn: float = 0.0
    context_sigma: float = 0.005

    def sigmas(self) -> Tensor:
        kwargs = dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max)
        if self.schedule == "karras":
            kwargs["rho"] = self.rho
        return make_sigmas(self.schedule, self.steps, **kwargs)


class WorldModel:
    """A trained world model, ready to imagine. Build with `WorldModel.load(path, device)`."""

    def __init__(
        self,
        denoiser: nn.Module,
        reward_head: nn.Module,
        edm: EDM,
        context: int,
        frame_shape: tuple[int, int, int],
        action_space: dict[str, Any],
        sampler: SamplerConfig = SamplerConfig(),
        start_bank: dict[str, Tensor] | None = None,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        bf16: bool = False,
    ):
        self.device = torch.device(device)
        self.denoiser = denoiser.to(self.device).eval()
        self.reward_head = reward_head.to(self.device).eval()
        self.edm, self.context, self.sampler = edm, context, sampler
        self.frame_shape = tuple(frame_shape)
        self.action_space = action_space
        self.start_bank = start_bank or {}
        self.metadata = metadata or {}
        self.bf16 = bf16
        if self.device.type == "cpu":
            self.denoiser = self.denoiser.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu", bf16: bool | None = None, **sampler_overrides: Any) -> "WorldModel":
        """Rebuilds the model of a checkpoint written by training (`model.pt`); needs nothing else.

        bf16: autocast the networks (default: on for CPU, where it is ~2x faster).
        sampler_overrides: e.g. steps=5, method="heun", context_sigma=0.01.
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        cfg = ckpt["config"]
        denoiser, reward_head = build_networks(cfg["model"], ckpt["action_space"], cfg["window"]["context"], cfg["window"]["target"])
        denoiser.load_state_dict(ckpt["denoiser"])
        reward_head.load_state_dict(ckpt["reward_head"])
        edm_keys = ("sigma_data", "loc", "scale", "sigma_min", "sigma_max")
        edm = EDM(**{k: cfg["diffusion"][k] for k in edm_keys})
        sampler = SamplerConfig(**{**cfg.get("sampler", {}), **sampler_overrides})
        device = torch.device(device)
        return cls(
            denoiser, reward_head, edm, cfg["window"]["context"], ckpt["frame_shape"], ckpt["action_space"], sampler,
            start_bank=ckpt["start_bank"],
            metadata={k: ckpt[k] for k in ("task", "reward_stats", "provenance", "config") if k in ckpt},
            device=device,
            bf16=device.type == "cpu" if bf16 is None else bf16,
        )

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def check_inputs(self, context_frames: Tensor, context_actions: Tensor, actions: Tensor) -> None:
        """Raises ValueError naming the first input with a wrong shape, dtype or value."""
        k, (h, w, c) = self.context, self.frame_shape
        if context_frames.dtype != torch.uint8 or context_frames.ndim != 5 or tuple(context_frames.shape[1:]) != (k, h, w, c):
            raise ValueError(f"context_frames must be (B, {k}, {h}, {w}, {c}) uint8, got {tuple(context_frames.shape)} {context_frames.dtype}.")
        b = context_frames.shape[0]
        a_shape = tuple(self.action_space.get("shape", [len(self.action_space.get("low", []))]))
        per_step = () if self.action_space["type"] == "discrete" else a_shape
        if tuple(context_actions.shape) != (b, k - 1, *per_step):
            raise ValueError(f"context_actions must be (B, {k - 1}, *action_shape) = {(b, k - 1, *per_step)}, got {tuple(context_actions.shape)}.")
        if actions.ndim != 2 + len(per_step) or actions.shape[0] != b or tuple(actions.shape[2:]) != per_step:
            raise ValueError(f"actions must be (B, N, *action_shape) with B={b}, action shape {per_step}; got {tuple(actions.shape)}.")
        for name, value in (("context_actions", context_actions), ("actions", actions)):
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise ValueError(f"{name} contain NaN or inf.")

    @torch.no_grad()
    def imagine(
        self,
        context_frames: Tensor,
        context_actions: Tensor,
        actions: Tensor,
        generator: torch.Generator | None = None,
    ) -> Imagined:
        """Imagines N steps for B worlds.

        context_frames: (B, K, H, W, 3) uint8, the last K frames (real or imagined);
        context_actions: (B, K-1, A), the actions between them;
        actions: (B, N, A), actions[:, 0] leads from the last context frame to the first new one.
        generator: the source of all sampling noise (same generator state -> same frames).
        """
        self.check_inputs(context_frames, context_actions, actions)
        dev = self.device
        frames = to_model(context_frames.to(dev))  # (B, K, C, H, W)
        window_actions = context_actions.to(dev).float() if self.action_space["type"] == "box" else context_actions.to(dev)
        actions = actions.to(dev).float() if self.action_space["type"] == "box" else actions.to(dev)
        b, n = actions.shape[:2]
        sigmas = self.sampler.sigmas()
        context_sigma = max(self.sampler.context_sigma, self.edm.sigma_min)
        out_frames, out_rewards, out_term = [], [], []
        for step in range(n):
            step_actions = torch.cat([window_actions, actions[:, step : step + 1]], dim=1)  # (B, K, A)
            noise = torch.randn(frames.shape, generator=generator).to(dev)
            context = frames + context_sigma * noise
            target_noise = torch.randn((b, 1, *frames.shape[2:]), generator=generator).to(dev)

            def denoise(x: Tensor, sigma: Tensor) -> Tensor:
                window = torch.cat([context, x], dim=1)
                sig = torch.full(window.shape[:2], context_sigma, device=dev)
                sig[:, -1] = sigma
                with self._autocast():
                    out = self.edm.denoise(self.denoiser, window, sig, actions=step_actions, outputs_from=window.shape[1] - 1)
                    return out[:, -1:].float()

            new = sample(denoise, target_noise, sigmas, self.sampler.method, churn=self.sampler.churn, generator=generator).clamp(-1, 1)
            with self._autocast():
                reward, logit = self.reward_head(torch.cat([frames[:, -1:], new], dim=1), step_actions[:, -1:])
            out_frames.append(to_uint8(new))
            out_rewards.append(reward.float())
            out_term.append(torch.sigmoid(logit.float()))
            # Slide the window: the sampled frame, rounded to uint8 as an env would see it.
            frames = torch.cat([frames[:, 1:], to_model(out_frames[-1])], dim=1)
            window_actions = step_actions[:, 1:]
        return Imagined(torch.cat(out_frames, dim=1).cpu(), torch.cat(out_rewards, dim=1).cpu(), torch.cat(out_term, dim=1).cpu())

    def random_start(self, batch: int, generator: np.random.Generator) -> tuple[Tensor, Tensor]:
        """`batch` start contexts drawn from the checkpoint's bank of real ones: frames, actions."""
        n = len(self.start_bank["frames"])
        idx = torch.as_tensor(generator.integers(n, size=batch))
        return self.start_bank["frames"][idx], self.start_bank["actions"][idx]
