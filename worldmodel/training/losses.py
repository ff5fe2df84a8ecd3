"""The training objective on one batch of windows: diffusion on the target frames (with context
noise augmentation) plus the reward and termination head; optionally on context the model
generated itself (rollout training)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from worldmodel.denoising import Conditioner, next_frame_denoiser
from worldmodel.diffusion import EDM, SamplerConfig, sample
from worldmodel.frames import to_model, to_uint8
from worldmodel.models.codec import FrameCodec
from worldmodel.models.state_dynamics import StateDynamics
from worldmodel.pose import PoseMaps


@dataclass(frozen=True)
class WindowLossConfig:
    """context: K frames before the target; target: F frames denoised; max_context_sigma: upper end
    of the uniform augmentation noise level of context frames (GameNGen / DIAMOND CS:GO);
    unroll_sampler: how rollout training generates its frames (few Euler steps)."""

    context: int
    target: int
    max_context_sigma: float = 0.1
    reward_weight: float = 1.0
    termination_weight: float = 0.1
    unroll_sampler: SamplerConfig = SamplerConfig(steps=1)
    success_weight: float = 0.1


class WindowLoss(nn.Module):
    """The trained modules and their objective; forward(batch, generator, unroll) -> dict of scalar losses.

    One module, so that distributed wrappers (DDP) see the whole forward pass. dynamics: the state
    track (trained before, frozen here: the denoiser is conditioned on its features of the
    recorded states), None for a model without one.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        reward_head: nn.Module,
        edm: EDM,
        cfg: WindowLossConfig,
        dynamics: StateDynamics | None = None,
        pose_maps: PoseMaps | None = None,
        codec: FrameCodec | None = None,
    ):
        super().__init__()
        self.denoiser, self.reward_head, self.edm, self.cfg = denoiser, reward_head, edm, cfg
        self.dynamics, self.pose_maps, self.codec = dynamics, pose_maps, codec

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None, unroll: int = 0) -> dict[str, Tensor]:
        return window_losses(
            self.denoiser,
            self.reward_head,
            self.edm,
            self.cfg,
            batch,
            generator,
            unroll,
            self.dynamics,
            self.pose_maps,
            self.codec,
        )


def _draw(draw: Callable[..., Tensor], shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    """torch.rand/randn of `shape` on `device`, drawn where `generator` lives: training on a GPU
    draws with a CUDA generator, so the noise is not made on the host and copied every step."""
    return draw(shape, generator=generator, device=device if generator is None else generator.device).to(device)


def _context_sigma(edm: EDM, cfg: WindowLossConfig, b: int, generator: torch.Generator | None, device) -> Tensor:
    """(B, 1): one augmentation level per window, uniform in [sigma_min, max_context_sigma]."""
    return (_draw(torch.rand, (b, 1), generator, device) * cfg.max_context_sigma).clamp_min(edm.sigma_min)


Conditioning = Callable[[int, int], dict[str, Tensor]]


def no_conditioning(start: int, stop: int) -> dict[str, Tensor]:
    return {}


@torch.no_grad()
def unrolled_frames(
    denoiser: nn.Module,
    edm: EDM,
    cfg: WindowLossConfig,
    frames: Tensor,
    actions: Tensor,
    unroll: int,
    generator: torch.Generator | None = None,
    conditioning: Conditioning = no_conditioning,
) -> Tensor:
    """The window the model would see after imagining `unroll` frames itself (Self Forcing /
    scheduled sampling): frames (B, K+U+F, C, H, W) real, actions (B, K+U+F-1, A) ->
    (B, K+U+F, C, H, W) where frames K..K+unroll-1 are the model's own samples, each generated from
    the K frames before it (real or generated) under the recorded actions; the rest stay real.
    Frames enter the next window after the same uint8 rounding as at imagination time.
    conditioning(start, stop): the denoiser's state and pose inputs for window frames start..stop-1."""
    k = cfg.context
    out = frames.clone()
    for i in range(unroll):
        window = out[:, i : i + k + 1]  # K context frames + the slot of frame k+i
        b = window.shape[0]
        context_sigma = _context_sigma(edm, cfg, b, generator, frames.device)
        noisy_context = window[:, :k] + context_sigma[..., None, None, None] * _draw(
            torch.randn, window[:, :k].shape, generator, frames.device
        )
        denoise = next_frame_denoiser(edm, denoiser, noisy_context, context_sigma[:, 0], actions[:, i : i + k], conditioning(i, i + k + 1))
        noise = _draw(torch.randn, (b, 1, *frames.shape[2:]), generator, frames.device)
        new = sample(denoise, noise, cfg.unroll_sampler).clamp(-1, 1)
        out[:, k + i] = to_model(to_uint8(new))[:, 0].to(out)
    return out


def window_losses(
    denoiser: nn.Module,
    reward_head: nn.Module,
    edm: EDM,
    cfg: WindowLossConfig,
    batch: dict[str, Tensor],
    generator: torch.Generator | None = None,
    unroll: int = 0,
    dynamics: StateDynamics | None = None,
    pose_maps: PoseMaps | None = None,
    codec: FrameCodec | None = None,
) -> dict[str, Tensor]:
    """Losses of a batch from `RolloutWindows` (frames (B, K+U+F, H, W, 3) uint8, actions (B, K+U+F-1, A), ...).

    Each target frame draws its own training sigma (Diffusion Forcing); each window draws one
    context augmentation level, applied to all of its context frames and given to the network.
    unroll U > 0 (rollout training): the model first imagines U frames from the first K real ones
    under the recorded actions, then learns to denoise the real frame K+U from that self-generated
    context, so it learns to steer back onto the recorded trajectory. Windows longer than K+U+F
    frames use their first K+U+F. The reward head always learns on real frames. With `dynamics` (a
    state track) the denoiser draws every frame given the recorded state's features (the batch's
    qpos, qvel); with `pose_maps` it also reads the recorded states' pose maps (in rollout training too: the recorded
    pose is the anchor its self-generated context must return to). With a `codec` (a latent model,
    frozen) the window's frames are diffused as their latents; the reward head still reads frames.
    """
    k, f = cfg.context, cfg.target
    real = to_model(batch["frames"])
    frames = real[:, : k + unroll + f]
    if codec is not None:
        with torch.no_grad():
            frames = rearrange(codec.encode(frames.flatten(0, 1)).float(), "(b t) c h w -> b t c h w", b=frames.shape[0])
    actions = batch["actions"][:, : k + unroll + f - 1]
    conditioner = Conditioner(denoiser, dynamics, pose_maps)
    segments = batch.get("segments")  # placed by the loader (`PoseMaps.with_segments`), else by the conditioner

    def conditioning(start: int, stop: int) -> dict[str, Tensor]:
        """The denoiser's conditioning of window frames start..stop-1, from their recorded states."""
        if not conditioner.reads_states:  # the batch may hold no states at all
            return {}
        return conditioner(
            batch["qpos"][:, start:stop], batch["qvel"][:, start:stop], None if segments is None else segments[:, start:stop]
        )

    if unroll:
        frames = unrolled_frames(denoiser, edm, cfg, frames, actions, unroll, generator, conditioning)[:, unroll:]
        actions = actions[:, unroll:]
    b, t = frames.shape[:2]
    device = frames.device
    sigma = torch.empty(b, t, device=device)
    sigma[:, k:] = edm.sample_sigma((b, t - k), generator, device if generator is None else generator.device).to(device)
    sigma[:, :k] = _context_sigma(edm, cfg, b, generator, device)
    noise = _draw(torch.randn, frames.shape, generator, device)
    loss_mask = torch.zeros(b, t, dtype=torch.bool, device=device)
    loss_mask[:, k:] = True
    diffusion = edm.loss(denoiser, frames, sigma, loss_mask, noise, actions=actions, outputs_from=k, **conditioning(unroll, unroll + k + f))
    n = k + f  # the reward head's transitions: those of the real window's first K+F frames
    recorded = None if dynamics is None else dynamics.features(torch.cat([batch["qpos"][:, :n], batch["qvel"][:, :n]], dim=-1))
    head = reward_head.loss(
        real[:, :n],
        batch["actions"][:, : n - 1],
        batch["rewards"][:, : n - 1],
        batch["terminated"][:, : n - 1],
        None if recorded is None else recorded[:, :n],
        batch["success"][:, : n - 1] if "success" in batch else None,
    )
    total = diffusion + cfg.reward_weight * head["reward"] + cfg.termination_weight * head["termination"]
    if "success" in head:
        total = total + cfg.success_weight * head["success"]
    return {"loss": total, "diffusion": diffusion} | head
