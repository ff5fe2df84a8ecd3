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

For planners that score thousands of imagined states per step, `rewards` and `goal_points` read a
batch of states with kinematics alone (body positions, ~7 us a state for reacher, 5x cheaper than
the forward pass and the env's own Python reward code).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from einops import rearrange

from envs.mujoco.tasks import PixelTaskEnv, TaskPreset, _position


class StateObserver:
    """preset's source env's observation of states. observation_space: that env's own (Reacher-v5's
    Box(10,), Fetch's Dict of observation / achieved_goal / desired_goal)."""

    def __init__(self, preset: TaskPreset):
        self.shadow = PixelTaskEnv(preset)
        self._env = self.shadow.env.unwrapped
        if not callable(getattr(self._env, "_get_obs", None)):
            self.shadow.close()
            raise ValueError(
                f"{preset.env_id} has no _get_obs(): its observation cannot be computed from a state; use observation='pixels'."
            )
        self.observation_space = self.shadow.env.observation_space
        self.goal_shape = self.shadow.goal_shape  # (G,): the goal a goal-based env's state needs besides [qpos, qvel]
        self.goal_based = self.goal_shape is not None
        model = self._env.model
        self.nq, self.nv = int(model.nq), int(model.nv)
        self.action_shape = tuple(self.shadow.action_space.shape)

    def observe(self, state: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """state: (nq+nv,) [qpos, qvel]; goal: (G,) for a goal-based env (its desired goal) ->
        the env's observation of that state (a fresh array or dict), and the shadow put there."""
        state = np.asarray(state, np.float64)
        if state.shape != (self.nq + self.nv,):
            raise ValueError(f"state must be [qpos, qvel] of shape ({self.nq + self.nv},), got {state.shape}.")
        data = self._env.data
        data.qpos[:], data.qvel[:] = state[: self.nq], state[self.nq :]
        self._set_goal(goal)
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

    def _set_goal(self, goal: np.ndarray | None) -> None:
        if not self.goal_based:
            return
        if goal is None:
            raise ValueError(
                f"{self.shadow.preset.env_id} keeps its goal outside the simulator state: give the episode's "
                f"goal (desired_goal, shape {self.goal_shape})."
            )
        self._env.goal = np.array(goal, np.float64).reshape(self.goal_shape)
        self._env._render_callback()  # the goal marker, which privileged policies read, moves to the goal

    def _positions(self, states: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """states (M, nq+nv) -> (M, len(names), 3): world positions of bodies (or sites) by kinematics."""
        states = np.asarray(states, np.float64)
        if states.ndim != 2 or states.shape[1] != self.nq + self.nv:
            raise ValueError(f"states must be (M, {self.nq + self.nv}) [qpos, qvel], got {states.shape}.")
        model, data = self._env.model, self._env.data
        views = [_position(data, n) for n in names]  # views into data: each kinematics pass updates them
        out = np.empty((len(states), len(names), 3))
        for i, qpos in enumerate(states[:, : self.nq]):
            data.qpos[:] = qpos
            mujoco.mj_kinematics(model, data)
            for j, view in enumerate(views):
                out[i, j] = view
        return out

    def goal_points(self, states: np.ndarray) -> np.ndarray:
        """states (M, nq+nv) -> (M, success_dims): where the preset's goal body is in each, the
        position goal-conditioned success compares (as `PixelTaskEnv.goal_point`)."""
        preset = self.shadow.preset
        if preset.goal_body is None:
            raise ValueError(f"Task {preset.name!r} has no goal_body: goal-conditioned planning needs one.")
        return self._positions(states, (preset.goal_body,))[:, 0, : preset.success_dims]

    def rewards(self, states: np.ndarray, actions: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        """The task's reward of steps that reached `states` (M, nq+nv) by `actions` (M, *A) (goal: a
        goal-based env's desired goal) -> (M,), as the real env computes it from its state after the
        step. Tasks with `reward_decode` (weighted distances between bodies, in space, minus
        w_c * |a|^2) are read from body positions; others call the env's own reward code on each state."""
        states, actions = np.asarray(states, np.float64), np.asarray(actions, np.float64)
        if actions.shape != (len(states), *self.action_shape):
            raise ValueError(
                f"actions must be ({len(states)}, {', '.join(map(str, self.action_shape))}), one per state, got {actions.shape}."
            )
        self._set_goal(goal)
        preset = self.shadow.preset
        if preset.reward_decode is not None and preset.has_success:
            w = preset.reward_decode
            pairs = [(preset.goal_body, preset.success_target, w["distance_weight"]), *w.get("extra_distances", ())]
            names = tuple(dict.fromkeys(name for a, b, _ in pairs for name in (a, b)))
            at = dict(zip(names, rearrange(self._positions(states, names), "m n d -> n m d")))
            distances = sum(weight * np.linalg.norm(at[a] - at[b], axis=-1) for a, b, weight in pairs)
            return -distances - w["control_weight"] * np.square(actions).sum(-1)
        out = np.empty(len(states))
        for i, (state, action) in enumerate(zip(states, actions)):
            obs = self.observe(state, goal)
            if self.goal_based:
                out[i] = self._env.compute_reward(obs["achieved_goal"], self._env.goal, {})
            else:
                out[i] = self._env._get_rew(action)[0]
        return out

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
