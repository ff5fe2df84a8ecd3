"""Reward, termination and (optionally) task success of a transition, predicted from its two frames
and its action (and, for a model with a state track, the two states)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from worldmodel.models.blocks import full_precision
from worldmodel.models.conditioning import ActionEncoder, check_states, state_encoder


def frame_encoder(in_channels: int, channels: int, dim: int) -> nn.Module:
    """(N, in_channels, H, W) -> (N, dim): four stride-2 convolutions, global average pooled."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 4, stride=2, padding=1),
        nn.SiLU(),
        nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
        nn.SiLU(),
        nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1),
        nn.SiLU(),
        nn.Conv2d(4 * c, dim, 4, stride=2, padding=1),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class RewardTerminationHead(nn.Module):
    """A small CNN over (frame_t, frame_t+1) stacked as channels, with the action (and with state_dim
    > 0 the embedded state features of both frames: a task's reward is mostly a function of its
    state, which pixels of a thin arm give only roughly) added to its features.

    forward(frames: (B, T+1, C, H, W) in [-1, 1], actions: (B, T, A), states: (B, T+1, state_dim)
    standardised state features or None) -> reward (B, T) in units of the training data
    (de-normalised), termination logit (B, T), success logit (B, T) (None without `success`: the
    task's success test after the step, learned from the recorded flags).

    Success is read from the state after the step alone (its state features with a state track,
    else its frame): given the action or the motion, the head learned from expert data that small
    actions mean "at the target" and called standing still a success.
    """

    def __init__(
        self,
        action_space: dict[str, Any],
        image_channels: int = 3,
        channels: int = 32,
        dim: int = 128,
        state_dim: int = 0,
        success: bool = False,
    ):
        super().__init__()
        self.encoder = frame_encoder(2 * image_channels, channels, dim)
        self.action = ActionEncoder(action_space, dim)
        self.state = state_encoder(2 * state_dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 2))
        self.success = None
        if success:
            reader = nn.Sequential(nn.Linear(state_dim, dim), nn.SiLU()) if state_dim else frame_encoder(image_channels, channels, dim)
            self.success = nn.Sequential(reader, nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1))
        # Reward normalisation, set from the training data before training (and saved with it).
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))

    def forward(self, frames: Tensor, actions: Tensor, states: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        check_states(self.state, states)
        b, t = actions.shape[:2]
        pairs = torch.cat([frames[:, :-1], frames[:, 1:]], dim=2)
        features = self.encoder(rearrange(pairs, "b t c h w -> (b t) c h w"))
        with full_precision(features.device):  # small matmuls: cheaper in fp32 than with autocast's weight casts
            features = features.float() + rearrange(self.action(actions), "b t d -> (b t) d")
            if states is not None:
                features = features + rearrange(self.state(torch.cat([states[:, :-1], states[:, 1:]], dim=-1).float()), "b t d -> (b t) d")
            reward_z, logit = rearrange(self.mlp(features), "(b t) two -> two b t", b=b)
        success = None
        if self.success is not None:
            after = states[:, 1:] if states is not None else frames[:, 1:]
            success = rearrange(self.success(after.flatten(0, 1)), "(b t) 1 -> b t", b=b).float()
        return reward_z * self.reward_std + self.reward_mean, logit, success

    def loss(
        self,
        frames: Tensor,
        actions: Tensor,
        rewards: Tensor,
        terminated: Tensor,
        states: Tensor | None = None,
        success: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Normalised-reward MSE, termination and (with a success output and `success` flags (B, T))
        success binary cross-entropies."""
        reward, termination_logit, success_logit = self(frames, actions, states)
        losses = {
            "reward": F.mse_loss((reward - self.reward_mean) / self.reward_std, (rewards - self.reward_mean) / self.reward_std),
            "termination": F.binary_cross_entropy_with_logits(termination_logit, terminated.float()),
        }
        if success_logit is not None and success is not None:
            losses["success"] = F.binary_cross_entropy_with_logits(success_logit, success.float())
        return losses
