"""Reward, termination and (optionally) task success of a transition, predicted from its two frames
and its action (and, for a model with a state track, the two states)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from worldmodel.models.conditioning import ActionEncoder, check_states, state_encoder


class RewardTerminationHead(nn.Module):
    """A small CNN over (frame_t, frame_t+1) stacked as channels, with the action (and with state_dim
    > 0 the embedded state features of both frames: a task's reward is mostly a function of its
    state, which pixels of a thin arm give only roughly) added to its features.

    forward(frames: (B, T+1, C, H, W) in [-1, 1], actions: (B, T, A), states: (B, T+1, state_dim)
    standardised state features or None) -> reward (B, T) in units of the training data
    (de-normalised), termination logit (B, T), success logit (B, T) (None without `success`: the
    task's success test after the step, learned from the recorded flags).
    """

    def __init__(self, action_space: dict[str, Any], image_channels: int = 3, channels: int = 32, dim: int = 128, state_dim: int = 0,
                 success: bool = False):
        super().__init__()
        c = channels
        self.encoder = nn.Sequential(
            nn.Conv2d(2 * image_channels, c, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(4 * c, dim, 4, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.action = ActionEncoder(action_space, dim)
        self.state = state_encoder(2 * state_dim, dim)
        self.success = success
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 3 if success else 2))
        # Reward normalisation, set from the training data before training (and saved with it).
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))

    def forward(self, frames: Tensor, actions: Tensor, states: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        check_states(self.state, states)
        b, t = actions.shape[:2]
        pairs = torch.cat([frames[:, :-1], frames[:, 1:]], dim=2)
        features = self.encoder(rearrange(pairs, "b t c h w -> (b t) c h w")) + rearrange(self.action(actions), "b t d -> (b t) d")
        if states is not None:
            features = features + rearrange(self.state(torch.cat([states[:, :-1], states[:, 1:]], dim=-1)), "b t d -> (b t) d")
        out = rearrange(self.mlp(features), "(b t) n -> n b t", b=b).float()
        return out[0] * self.reward_std + self.reward_mean, out[1], out[2] if self.success else None

    def loss(self, frames: Tensor, actions: Tensor, rewards: Tensor, terminated: Tensor, states: Tensor | None = None,
             success: Tensor | None = None) -> dict[str, Tensor]:
        """Normalised-reward MSE, termination and (with a success output and `success` flags (B, T))
        success binary cross-entropies."""
        reward, termination_logit, success_logit = self(frames, actions, states)
        losses = {"reward": F.mse_loss((reward - self.reward_mean) / self.reward_std, (rewards - self.reward_mean) / self.reward_std),
                  "termination": F.binary_cross_entropy_with_logits(termination_logit, terminated.float())}
        if success_logit is not None and success is not None:
            losses["success"] = F.binary_cross_entropy_with_logits(success_logit, success.float())
        return losses
