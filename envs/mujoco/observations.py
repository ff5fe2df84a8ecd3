"""The source task's own observation of any simulator state: what a state policy sees, computed
from an imagined [qpos, qvel] exactly as the real env computes it from its own.

A `StateObserver` holds a private copy of the task's env that is never stepped. `observe` writes a
state into the copy's data, runs MuJoCo's forward pass (kinematics and velocities; time does not
advance, no physics step) and calls the env's own observation code (`_get_obs`), so a state equal
to a real one gives exactly the real observation (tested for reacher, pusher and Fetch). The copy
is also a shadow of that state for privileged scripted policies: a policy built on `observer.shadow`
reads the state last observed, as it reads the real simulator.

Goal-based envs (Gymnasium-Robotics' Fetch) keep their goal outside the simulator state: it is given
with the state (`goal`, the episode's `desired_goal`), and the copy's goal marker is moved to it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.mujoco.tasks import PixelTaskEnv, TaskPreset


class StateObserver:
    """preset's source env's observation of states. observation_space: that env's own (Reacher-v5's
    Box(10,), Fetch's Dict of observation / achieved_goal / desired_goal)."""

    def __init__(self, preset: TaskPreset):
        self.shadow = PixelTaskEnv(preset)
        self._env = self.shadow.env.unwrapped
        if not callable(getattr(self._env, "_get_obs", None)):
            self.shadow.close()
            raise ValueError(f"{preset.env_id} has no _get_obs(): its observation cannot be computed from a state; "
                             "use observation='pixels'.")
        self.observation_space = self.shadow.env.observation_space
        self.goal_shape = self.shadow.goal_shape  # (G,): the goal a goal-based env's state needs besides [qpos, qvel]
        self.goal_based = self.goal_shape is not None
        model = self._env.model
        self.nq, self.nv = int(model.nq), int(model.nv)

    def observe(self, state: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """state: (nq+nv,) [qpos, qvel]; goal: (G,) for a goal-based env (its desired goal) ->
        the env's observation of that state (a fresh array or dict), and the shadow put there."""
        state = np.asarray(state, np.float64)
        if state.shape != (self.nq + self.nv,):
            raise ValueError(f"state must be [qpos, qvel] of shape ({self.nq + self.nv},), got {state.shape}.")
        data = self._env.data
        data.qpos[:], data.qvel[:] = state[: self.nq], state[self.nq :]
        if self.goal_based:
            if goal is None:
                raise ValueError(f"{self.shadow.preset.env_id} keeps its goal outside the simulator state: give the episode's "
                                 f"goal (desired_goal, shape {self.goal_shape}).")
            self._env.goal = np.array(goal, np.float64).reshape(self.goal_shape)
            self._env._render_callback()  # the goal marker, which privileged policies read, moves to the goal
        mujoco.mj_forward(self._env.model, data)
        obs = self._env._get_obs()
        return {k: np.array(v) for k, v in obs.items()} if isinstance(obs, dict) else np.array(obs)

    def success(self, state: np.ndarray, goal: np.ndarray | None = None) -> bool | None:
        """The task's own success test (the preset's) on `state` (and the shadow put there); None
        for a task without one."""
        if not self.shadow.preset.has_success:
            return None
        self.observe(state, goal)
        return self.shadow.success()

    def flat(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """An observation as one vector, as `PixelTaskEnv` gives it in info["state"] (a dict's keys in
        the space's order): what policies trained on a flattened goal-based env read."""
        return gym.spaces.flatten(self.observation_space, obs) if isinstance(self.observation_space, gym.spaces.Dict) else obs

    def close(self) -> None:
        self.shadow.close()


def observer_for(task: dict[str, Any] | TaskPreset) -> StateObserver:
    """The observer of a checkpoint's task (`ModelSpec.task`, a preset's `describe()`)."""
    from envs.mujoco.tasks import get_task

    return StateObserver(task if isinstance(task, TaskPreset) else get_task(task))
