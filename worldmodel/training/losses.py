"""The training objective on one batch of windows: diffusion on the target frames (with context
noise augmentation) plus the reward and termination head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from worldmodel.diffusion import EDM
from worldmodel.frames import to_model


@dataclass(frozen=True)
class WindowLossConfig:
    """context: K real frames; target: F frames denoised; max_context_sigma: upper end of the
    uniform augmentation noise level of context frames (GameNGen / DIAMOND CS:GO)."""

    context: int
    target: int
    max_context_sigma: float = 0.1
    reward_weight: float = 1.0
    termination_weight: float = 0.1


class WindowLoss(nn.Module):
    """The trained modules and their objective; forward(batch, generator) -> dict of scalar losses.

    One module, so that distributed wrappers (DDP) see the whole forward pass.
    """

    def __init__(self, denoiser: nn.Module, reward_head: nn.Module, edm: EDM, cfg: WindowLossConfig):
        super().__init__()
        self.denoiser, self.reward_head, self.edm, self.cfg = denoiser, reward_head, edm, cfg

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return window_losses(self.denoiser, self.reward_head, self.edm, self.cfg, batch, generator)


def window_losses(
    denoiser: nn.Module, reward_head: nn.Module, edm: EDM, cfg: WindowLossConfig, batch: dict[str, Tensor], generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Losses of a batch from `RolloutWindows` (frames (B, K+F, H, W, 3) uint8, actions (B, K+F-1, A), ...).

    Each target frame draws its own training sigma (Diffusion Forcing); each window draws one
    context augmentation level, applied to all of its context frames and given to the network.
    """
    frames = to_model(batch["frames"])
    b, t = frames.shape[:2]
    k = cfg.context
    device = frames.device
    sigma = torch.empty(b, t, device=device)
    sigma[:, k:] = edm.sample_sigma((b, t - k), generator=generator).to(device)
    context_sigma = torch.rand(b, 1, generator=generator).to(device) * cfg.max_context_sigma
    sigma[:, :k] = context_sigma.clamp_min(edm.sigma_min)
    noise = torch.randn(frames.shape, generator=generator).to(device)
    loss_mask = torch.zeros(b, t, dtype=torch.bool, device=device)
    loss_mask[:, k:] = True
    diffusion = edm.loss(denoiser, frames, sigma, loss_mask, noise, actions=batch["actions"], outputs_from=k)
    reward_loss, termination_loss = reward_head.loss(frames, batch["actions"], batch["rewards"], batch["terminated"])
    total = diffusion + cfg.reward_weight * reward_loss + cfg.termination_weight * termination_loss
    return {"loss": total, "diffusion": diffusion, "reward": reward_loss, "termination": termination_loss}
