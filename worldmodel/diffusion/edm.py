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
    """

    sigma_data: float = 0.5
    loc: float = -0.4
    scale: float = 1.2
    sigma_min: float = 2e-3
    sigma_max: float = 20.0

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
        **conditioning,
    ) -> Tensor:
        """EDM loss on the frames where `loss_mask` (B, T) is True.

        The network regresses the scaled target (x - c_skip x_noisy) / c_out, which weights every
        noise level alike (the lambda(sigma) weighting of the EDM paper).
        x_clean, noise: (B, T, C, H, W); sigma: (B, T) per-frame noise levels.
        """
        x_noisy = x_clean + _expand(sigma, noise) * noise
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        out = network(_expand(c_in, x_noisy) * x_noisy, c_noise, **conditioning).float()
        target = (x_clean - _expand(c_skip, x_noisy) * x_noisy) / _expand(c_out, x_noisy)
        error = (out - target).pow(2)
        per_frame = error.flatten(2).mean(-1)  # (B, T)
        mask = loss_mask.to(per_frame.dtype)
        return (per_frame * mask).sum() / mask.sum().clamp_min(1.0)
