"""The HDF5 rollout format (version 1): layout, the episode container and its checks.

One file holds many episodes of one task, concatenated along the first axis of flat datasets
(`docs/data_format.md` has the full description):

    /frames        (N_frames, H, W, 3) uint8   every frame, including each episode's reset frame
    /qpos, /qvel   (N_frames, nq|nv) float64   simulator state at each frame
    /actions       (N_steps, A) float32        action taken at step t (frame t -> frame t+1)
    /rewards       (N_steps,) float32
    /terminated, /truncated, /success  (N_steps,) bool   after step t
    /episodes/frame_start, step_start, length, seed  (E,) int64;  /episodes/policy (E,) JSON bytes
    /episodes/goal (E, G) float64   a goal-based task's goal (desired_goal) per episode; only in
                                    files whose `goal_shape` attribute names one (Fetch)

An episode with T steps owns frames [frame_start, frame_start + T + 1) and steps
[step_start, step_start + T). Episodes start on a frame-chunk boundary; rows between episodes
are zero padding. Only episodes listed in /episodes exist: data past the last listed
episode is an unfinished write and is ignored (and overwritten by the next append).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 1

STEP_FIELDS = ("actions", "rewards", "terminated", "truncated", "success")
FRAME_FIELDS = ("frames", "qpos", "qvel")
EPISODE_FIELDS = ("frame_start", "step_start", "length", "seed", "policy")
POLICY_BYTES = 128  # fixed-size JSON, so the index can grow while readers follow the file (SWMR)


class RolloutFormatError(ValueError):
    """A rollout file or episode that does not follow the format; the message says how to fix it."""


@dataclass
class Episode:
    """One recorded episode of T steps.

    frames: (T+1, H, W, 3) uint8, frames[0] is the reset frame.
    actions: (T, A) float32, actions[t] leads from frames[t] to frames[t+1].
    rewards, terminated, truncated, success: (T,), for step t.
    qpos, qvel: (T+1, nq), (T+1, nv) simulator state at each frame.
    goal: (G,) a goal-based task's goal (kept outside the simulator state), else None.
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    seed: int = 0
    policy: dict[str, Any] = field(default_factory=dict)
    goal: np.ndarray | None = None

    @property
    def length(self) -> int:
        return len(self.actions)

    def validate(self) -> None:
        """Raises RolloutFormatError naming the first inconsistent array."""
        T = self.length
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise RolloutFormatError(f"frames must be (T+1, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}.")
        if T < 1:
            raise RolloutFormatError("an episode needs at least one step.")
        expected = {"frames": T + 1, "qpos": T + 1, "qvel": T + 1, "rewards": T, "terminated": T, "truncated": T, "success": T}
        for name, n in expected.items():
            if len(getattr(self, name)) != n:
                raise RolloutFormatError(f"{name} has length {len(getattr(self, name))}, expected {n} for an episode of {T} steps.")
        if not np.isfinite(self.actions).all():
            raise RolloutFormatError("actions contain NaN or inf.")
        if len(encode_policy(self.policy)) > POLICY_BYTES:
            raise RolloutFormatError(f"policy description longer than {POLICY_BYTES} bytes as JSON: {self.policy}.")


def encode_policy(policy: dict[str, Any]) -> bytes:
    return json.dumps(policy, sort_keys=True, separators=(",", ":")).encode()


def decode_policy(raw: bytes) -> dict[str, Any]:
    return json.loads(bytes(raw).rstrip(b"\0").decode())


def policy_label(policy: dict[str, Any]) -> str:
    """Short human label: `noisy_expert(eps=0.3)`."""
    params = ",".join(f"{k}={v}" for k, v in sorted(policy.items()) if k != "name")
    return f"{policy.get('name', '?')}({params})" if params else str(policy.get("name", "?"))
