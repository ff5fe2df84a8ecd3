"""Planning in the model's compact state: candidates are rolled forward by the state track (the
imagined [qpos, qvel], a small MLP) and scored by the task's own reward or goal distance read from
those states, with no frame sampled. A plan of iCEM's ~320 candidates over 15 steps takes ~0.07 s on
a 2-core CPU, against ~200 s through sampled frames, so a search that solves the task fits the
CPU's budget (docs/planning.md). The same objectives score the real simulator's states for the
oracle, so the two differ only in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from worldmodel.planning.optimizers import Score
from worldmodel.simulator import Simulator
from worldmodel.world_model import Window, WorldModel

Rollout = Callable[[np.ndarray], np.ndarray]  # actions (N, H, A) -> states (N, H, nq+nv) after each action


class TaskReadout(Protocol):
    """What a task's reward and goal are, as functions of its state (`envs.mujoco.StateObserver`)."""

    def rewards(self, states: np.ndarray, actions: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        """states (M, nq+nv) reached by actions (M, *A) -> (M,) the task's rewards of those steps."""

    def goal_points(self, states: np.ndarray) -> np.ndarray:
        """states (M, nq+nv) -> (M, D) where the task's goal body is."""


def dynamics_rollout(wm: WorldModel, window: Window) -> Rollout:
    """The state track rolled forward from the window's last state (one world)."""
    if wm.dynamics is None:
        raise ValueError("scoring in states needs a model with a state track (model.state in training); plan with scoring=frames.")
    if len(window) != 1:
        raise ValueError(f"plan from one world's window, got a batch of {len(window)}.")
    start = window.states[:, -1]

    @torch.no_grad()
    def rollout(actions: np.ndarray) -> np.ndarray:
        a = torch.from_numpy(actions).to(wm.device, torch.float32)
        return wm.dynamics.rollout(start.expand(len(a), -1), a).cpu().numpy()

    return rollout


def simulator_rollout(sim: Simulator) -> Rollout:
    """The real simulator as the rollout (the oracle), from its current state."""
    return sim.rollout_states


def state_return(rollout: Rollout, readout: TaskReadout, goal: np.ndarray | None = None, terminal_weight: float = 0.0) -> Score:
    """score(actions (N, H, A)) -> (N,): the sum of the task's rewards along each rolled-out future,
    plus `terminal_weight` times the last step's reward with no action: the steps after the horizon,
    as if the future ended at rest there. Without it a short horizon sees too little of a reach to
    pay its control cost and settles a few cm off the target. goal: a goal-based task's desired goal."""

    def score(actions: np.ndarray) -> np.ndarray:
        states = rollout(actions)
        flat = states.reshape(-1, states.shape[-1])
        rewards = readout.rewards(flat, actions.reshape(-1, *actions.shape[2:]), goal).reshape(actions.shape[:2])
        if not terminal_weight:
            return rewards.sum(1)
        rest = readout.rewards(states[:, -1], np.zeros_like(actions[:, -1]), goal)
        return rewards.sum(1) + terminal_weight * rest

    return score


def state_goal_distance(rollout: Rollout, readout: TaskReadout, goal_point: np.ndarray, mean_weight: float = 0.1) -> Score:
    """score(actions (N, H, A)) -> (N,): minus the closest approach of the goal body to `goal_point`
    (D,) along each future (reaching it counts, as the protocol stops there), plus `mean_weight`
    times the mean distance, so of two futures that reach it the sooner wins. A goal point of fewer
    dimensions than the task's (a table-plane estimate) is compared in those."""
    goal_point = np.asarray(goal_point, np.float64)

    def score(actions: np.ndarray) -> np.ndarray:
        states = rollout(actions)
        points = readout.goal_points(states.reshape(-1, states.shape[-1]))[:, : len(goal_point)]
        d = np.linalg.norm(points - goal_point, axis=-1).reshape(actions.shape[:2])
        return -(d.min(1) + mean_weight * d.mean(1))

    return score
