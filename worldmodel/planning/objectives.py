"""Objectives that score N candidate action sequences from one start window by imagining them all
in one batch through `WorldModel.imagine`."""

from __future__ import annotations

import numpy as np
import torch

from worldmodel.rollout import Window, WorldModel


def _imagine(wm: WorldModel, window: Window, actions: np.ndarray, generator: torch.Generator):
    """window: one world (batch 1); actions: (N, H, A) -> Imagined of N worlds."""
    if len(window) != 1:
        raise ValueError(f"plan from one world's window, got a batch of {len(window)}.")
    n = len(actions)
    frames, context_actions = window.frames.expand(n, *window.frames.shape[1:]), window.actions.expand(n, *window.actions.shape[1:])
    return wm.imagine(frames.cpu(), context_actions.cpu(), torch.from_numpy(actions), generator)


def predicted_return(wm: WorldModel, window: Window, generator: torch.Generator):
    """score(actions (N, H, A)) -> (N,): the sum of predicted rewards along each imagined future."""

    def score(actions: np.ndarray) -> np.ndarray:
        return _imagine(wm, window, actions, generator).rewards.sum(1).numpy()

    return score


def goal_distance(wm: WorldModel, window: Window, goal_frame: np.ndarray, generator: torch.Generator):
    """score(actions (N, H, A)) -> (N,): minus the mean squared pixel error (0-1 scale) between the
    best imagined frame of each future and `goal_frame` (H, W, 3) uint8: reaching it early counts."""
    goal = torch.as_tensor(goal_frame).float() / 255

    def score(actions: np.ndarray) -> np.ndarray:
        frames = _imagine(wm, window, actions, generator).frames.float() / 255  # (N, H, h, w, 3)
        return -((frames - goal) ** 2).flatten(2).mean(2).min(1).values.numpy()

    return score


def simulator_return(env):
    """The oracle's score: each candidate run in the real simulator from its current state (cloned
    and restored), rewards summed. env: a PixelTaskEnv (get_state / set_state / simulate)."""

    def score(actions: np.ndarray) -> np.ndarray:
        start = env.get_state()
        returns = np.array([sum(env.simulate(a)[0] for a in sequence) for sequence in _restoring(env, start, actions)])
        env.set_state(start)
        return returns

    return score


def simulator_goal_distance(env, goal_frame: np.ndarray):
    """The oracle's goal score: like `goal_distance`, on frames rendered by the real simulator."""
    goal = goal_frame.astype(np.float32) / 255

    def score(actions: np.ndarray) -> np.ndarray:
        start = env.get_state()
        best = []
        for sequence in _restoring(env, start, actions):
            frames = np.stack([env.simulate(a, render=True)[1] for a in sequence]).astype(np.float32) / 255
            best.append(-((frames - goal) ** 2).reshape(len(frames), -1).mean(1).min())
        env.set_state(start)
        return np.asarray(best)

    return score


def _restoring(env, start: np.ndarray, actions: np.ndarray):
    """Yields each candidate sequence after putting the simulator back to `start`."""
    for sequence in actions:
        env.set_state(start)
        yield sequence
