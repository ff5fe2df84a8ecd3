"""What the library asks of a real simulator: the structural interface planning protocols and
oracles are written against, so that `worldmodel` never imports `envs` (`envs.PixelTaskEnv`
implements it; so can a user's own robot wrapper)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Simulator(Protocol):
    """A real environment seen as pixels, whose state can be saved and restored.

    action_space: a gymnasium Box (low, high, shape); frames: (H, W, 3) uint8; info["success"]: the
    task's own test after the step; info["qpos"], info["qvel"] (reset and step): the state, which
    world models with a state track start from.
    """

    action_space: Any
    task_name: str  # the task it simulates (a recording's metadata["task"])
    episode_steps: int  # steps of a full episode
    success_distance: float | None  # m; None for a task without a success test

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]: ...

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]: ...

    def render(self) -> np.ndarray: ...

    def get_state(self) -> np.ndarray:
        """The full physics state, for `set_state(state)`."""

    def set_state(self, state: np.ndarray | None = None, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None) -> np.ndarray:
        """Restores a `get_state()` state or a recorded qpos/qvel; returns the frame."""

    def rollout_states(self, actions: np.ndarray) -> np.ndarray:
        """actions (N, T, *A) -> (N, T, nq+nv) [qpos, qvel] after each step of each open-loop
        sequence from the current state, which is left as it was (the oracle's model)."""

    def simulate(self, action: np.ndarray, render: bool = False) -> tuple[float, np.ndarray | None]:
        """One raw step outside the episode's bookkeeping: (reward, frame if render)."""

    def episode_goal(self) -> np.ndarray | None:
        """(G,) a goal-based env's goal for this episode (kept outside its state), else None."""

    def goal_point(self) -> np.ndarray:
        """(2,) position of the task's goal body: what goal-conditioned success compares."""
