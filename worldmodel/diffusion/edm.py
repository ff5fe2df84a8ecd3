"""EDM preconditioning (Karras et al. 2022) with its own noise level for every frame.

A window's frames each carry a sigma (Diffusion Forcing): target frames a sampled training level,
context frames a small augmentation level. All scalings broadcast a (B, T) sigma over
(B, T, C, H, W) frames, so one code path serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# network(x_in: (B, T, C, H, W), c_noise: (B, T), **conditioning) -> (B, T, C, H, W)
Network = Callable[..., Tensor]


def _expand(sigma: Tensor, like: Tensor) -> Tensor:
    """(B, T) -> (B, T, 1, 1, 1) to broadcast over frames."""
    return sigma.reshape(*sigma.shape, *([1] * (like.ndim - sigma.ndim)))


@dataclass(frozen=True)
class EDM:
    """Preconditioning and loss. `sigma_data` is the data's std (frames in [-1, 1]: 0.5).

    Training sigma is log-normal (`loc`, `scale`) clipped to [sigma_min, sigma_max], as DIAMOND.

    residual_scale > 0: target frames are diffused as their change from the last context frame,
    times this scale (`encode_target` / `decode_target`); 0: as frames. Most of a robot's frame does
    not move: as a change it is exactly 0, so the model need not redraw the scene every step (where
    a static goal drifts away over a long rollout) and its capacity goes to what moves.
    """

    sigma_data: float = 0.5
    loc: float = -0.4
    scale: float = 1.2
    sigma_min: float = 2e-3
    sigma_max: float = 20.0
    residual_scale: float = 0.0

    def encode_target(self, target: Tensor, last: Tensor) -> Tensor:
        """target: (B, F, C, H, W) frames, last: (B, 1, C, H, W) the last context frame -> what is diffused."""
        return (target - last) * self.residual_scale if self.residual_scale else target

    def decode_target(self, x: Tensor, last: Tensor) -> Tensor:
        """The inverse of `encode_target`: diffused targets (B, F, C, H, W) -> frames (not clamped)."""
        return last + x / self.residual_scale if self.residual_scale else x

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in, c_noise for sigma of any shape."""
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        c_skip = sd2 / total
        c_out = sigma * self.sigma_data / total.sqrt()
        c_in = 1.0 / total.sqrt()
        c_noise = sigma.clamp_min(1e-12).log() / 4
        return c_skip, c_out, c_in, c_noise

    def sample_sigma(self, shape: tuple[int, ...], generator: torch.Generator | None = None, device=None) -> Tensor:
        """Training noise levels: log-normal, clipped."""
        normal = torch.randn(shape, generator=generator, device=device)
        return (self.loc + self.scale * normal).exp().clamp(self.sigma_min, self.sigma_max)

    def denoise(self, network: Network, x_noisy: Tensor, sigma: Tensor, outputs_from: int = 0, **conditioning) -> Tensor:
        """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise): the estimate of the clean frames.

        x_noisy: (B, T, C, H, W); sigma: (B, T), 0 for a clean frame; outputs_from: the first frame
        whose estimate is wanted (the network is told, and the context's is never formed).
        Returns (B, T - outputs_from, C, H, W).
        """
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        out = network(_expand(c_in, x_noisy) * x_noisy, c_noise, outputs_from=outputs_from, **conditioning)[:, outputs_from:]
        x_noisy, c_skip, c_out = x_noisy[:, outputs_from:], c_skip[:, outputs_from:], c_out[:, outputs_from:]
        return _expand(c_skip, x_noisy) * x_noisy + _expand(c_out, x_noisy) * out.to(x_noisy.dtype)

    def loss(
        self,
        network: Network,
        x_clean: Tensor,
        sigma: Tensor,
        loss_mask: Tensor,
        noise: Tensor,
        pixel_weight: Tensor | None = None,
        **conditioning,
    ) -> Tensor:
        """EDM loss on the frames where `loss_mask` (B, T) is True.

        The network regresses the scaled target (x - c_skip x_noisy) / c_out, which weights every
        noise level alike (the lambda(sigma) weighting of the EDM paper).
        x_clean, noise: (B, T, C, H, W); sigma: (B, T) per-frame noise levels; pixel_weight:
        (B, T, 1, H, W) or None, a weight per pixel of the squared error.
        """
        x_noisy = x_clean + _expand(sigma, noise) * noise
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        out = network(_expand(c_in, x_noisy) * x_noisy, c_noise, **conditioning).float()
        target = (x_clean - _expand(c_skip, x_noisy) * x_noisy) / _expand(c_out, x_noisy)
        error = (out - target).pow(2)
        if pixel_weight is not None:
            error = error * pixel_weight
        per_frame = error.flatten(2).mean(-1)  # (B, T)
        mask = loss_mask.to(per_frame.dtype)
        return (per_frame * mask).sum() / mask.sum().clamp_min(1.0)
