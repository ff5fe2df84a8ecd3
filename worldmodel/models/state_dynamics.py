"""The state track: a learned model of the recorded simulator state that imagined frames are drawn from.

A denoiser that must infer the arm's velocity from a few pixels of a thin link, every step, from
frames it drew itself, loses the pose within 5-10 steps. The recorded state (qpos, qvel) says
the same in a few numbers: a small network rolls it forward under the actions (accurate over tens
of steps), and the denoiser draws each frame given the state it shows. Frame errors then do not
compound: the next frame is again drawn from the state, not from the last frame alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from worldmodel.models.conditioning import ActionEncoder
from worldmodel.states import state_features


class StateDynamics(nn.Module):
    """next state = state + MLP(standardised state features, action) * delta_std.

    state: (B, nq + nv) raw [qpos, qvel]; features: sin/cos of qpos and qvel (`state_features`),
    standardised by the training data's `feature_mean`/`feature_std` (also what denoisers are
    conditioned on). delta_std: (nq + nv,) std of one step's change, the output's scale.
    joint_limits: the next qpos is clamped to bounds (`set_limits`: the task model's joint ranges).
    """

    def __init__(self, action_space: dict[str, Any], nq: int, nv: int, hidden: int = 256, layers: int = 3, joint_limits: bool = False):
        super().__init__()
        self.nq, self.nv = nq, nv
        if joint_limits:  # qpos bounds (`set_limits`); the float32 extremes: a free coordinate (finite: checkpoints refuse inf weights)
            self.register_buffer("qpos_low", torch.full((nq,), torch.finfo(torch.float32).min))
            self.register_buffer("qpos_high", torch.full((nq,), torch.finfo(torch.float32).max))
        self.joint_limits = joint_limits
        features = 2 * nq + nv
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.register_buffer("delta_std", torch.ones(nq + nv))
        self.state_in = nn.Linear(features, hidden)
        self.action_in = ActionEncoder(action_space, hidden)
        body: list[nn.Module] = []
        for _ in range(layers - 1):
            body += [nn.SiLU(), nn.Linear(hidden, hidden)]
        self.body = nn.Sequential(*body, nn.SiLU(), nn.Linear(hidden, nq + nv))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def set_statistics(self, feature_mean: Sequence[float], feature_std: Sequence[float], delta_std: Sequence[float]) -> None:
        """From the training data (`data.stats.state_stats`)."""
        for name, value in (("feature_mean", feature_mean), ("feature_std", feature_std), ("delta_std", delta_std)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def set_limits(self, low: Sequence[float], high: Sequence[float]) -> None:
        """qpos bounds (nq,) each (+-inf: free): the rolled-out state stops at a joint's limit as the simulator's does."""
        extreme = torch.finfo(torch.float32)
        for buffer, value in ((self.qpos_low, low), (self.qpos_high, high)):
            buffer.copy_(torch.as_tensor(value, dtype=torch.float64).clamp(extreme.min, extreme.max))

    def features(self, state: Tensor) -> Tensor:
        """(..., nq + nv) raw state -> (..., 2 nq + nv) standardised features."""
        qpos, qvel = state[..., : self.nq], state[..., self.nq :]
        return (state_features(qpos.float(), qvel.float()) - self.feature_mean) / self.feature_std

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        """state (B, nq + nv), action (B, A) -> the next state (B, nq + nv), float32."""
        h = self.state_in(self.features(state)) + self.action_in(action)
        new = state.float() + self.body(h).float() * self.delta_std
        if not self.joint_limits:
            return new
        # A learned step cannot stop exactly at a limit; run past it, a hinge's sin/cos shows another pose (measured: 17-22 cm
        # fingertip errors in the held-out random-policy episodes whose elbow hits its limit).
        return torch.cat([new[..., : self.nq].clamp(self.qpos_low, self.qpos_high), new[..., self.nq :]], dim=-1)

    def rollout(self, state: Tensor, actions: Tensor) -> Tensor:
        """state (B, S) and actions (B, N, A) -> the N next states (B, N, S), each from the last predicted."""
        out = []
        for t in range(actions.shape[1]):
            state = self(state, actions[:, t])
            out.append(state)
        return torch.stack(out, 1)

    def loss(self, states: Tensor, actions: Tensor) -> Tensor:
        """states (B, T, S) recorded, actions (B, T-1, A) between them: the error of the features of
        one-step predictions plus that of a rollout over the whole window from its first state,
        so the learned dynamics stays on the trajectory over many steps, not only one."""
        true = self.features(states[:, 1:])
        one_step = self(states[:, :-1].flatten(0, 1), actions.flatten(0, 1)).reshape(states[:, 1:].shape)
        rolled = self.rollout(states[:, 0], actions)
        return (self.features(one_step) - true).pow(2).mean() + (self.features(rolled) - true).pow(2).mean()


def build_dynamics(spec: dict[str, Any], action_space: dict[str, Any]) -> StateDynamics | None:
    """The state track a model spec describes ({} or None: the model has none)."""
    return StateDynamics(action_space, **spec) if spec else None
