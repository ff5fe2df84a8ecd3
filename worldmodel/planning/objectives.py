"""Objectives that score N candidate action sequences from one start window by imagining them all
in one batch through `WorldModel.imagine`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from worldmodel.world_model import Window, WorldModel


def _imagine(wm: WorldModel, window: Window, actions: np.ndarray, generator: torch.Generator):
    """window: one world (batch 1); actions: (N, H, A) -> Imagined of N worlds."""
    if len(window) != 1:
        raise ValueError(f"plan from one world's window, got a batch of {len(window)}.")
    n = len(actions)
    frames, context_actions, states = (
        None if v is None else v.expand(n, *v.shape[1:]).cpu() for v in (window.frames, window.actions, window.states)
    )
    return wm.imagine(frames, context_actions, torch.from_numpy(actions), generator, states)


def predicted_return(wm: WorldModel, window: Window, generator: torch.Generator):
    """score(actions (N, H, A)) -> (N,): the sum of predicted rewards along each imagined future."""

    def score(actions: np.ndarray) -> np.ndarray:
        return _imagine(wm, window, actions, generator).rewards.sum(1).numpy()

    return score


def blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """frames: (..., H, W, 3) uint8 -> (..., H, W, 3) float in [0, 1], Gaussian-blurred by `sigma`
    pixels (0: unblurred). A thin arm a few pixels off its goal pose overlaps nothing of it in raw
    pixels, so raw MSE is flat there; blurred, the error falls as the arm gets closer."""
    x = frames.float() / 255
    if sigma <= 0:
        return x
    radius = int(3 * sigma + 0.5)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = (taps / taps.sum()).repeat(3, 1, 1, 1)  # (3, 1, 1, 2r+1): one kernel per channel
    lead = x.shape[:-3]
    x = rearrange(x, "... h w c -> (...) c h w")
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps, groups=3)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.transpose(2, 3), groups=3)
    return rearrange(x, "b c h w -> b h w c").reshape(*lead, *x.shape[2:], 3)


def _best_distance(frames: torch.Tensor, goal: torch.Tensor, sigma: float) -> np.ndarray:
    """frames (N, H, h, w, 3) uint8, goal (h, w, 3) uint8 -> (N,) minus the smallest mean squared
    error (0-1 scale, after `blur`) of any frame of each future to the goal: reaching it early counts."""
    return -((blur(frames, sigma) - blur(goal, sigma)) ** 2).flatten(2).mean(2).min(1).values.numpy()


def goal_distance(wm: WorldModel, window: Window, goal_frame: np.ndarray, generator: torch.Generator, sigma: float = 0.0):
    """score(actions (N, H, A)) -> (N,): `_best_distance` of each imagined future to `goal_frame`
    (h, w, 3) uint8, compared after a Gaussian blur of `sigma` pixels."""
    goal = torch.as_tensor(goal_frame)

    def score(actions: np.ndarray) -> np.ndarray:
        return _best_distance(_imagine(wm, window, actions, generator).frames, goal, sigma)

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


def simulator_goal_distance(env, goal_frame: np.ndarray, sigma: float = 0.0):
    """The oracle's goal score: like `goal_distance`, on frames rendered by the real simulator."""
    goal = torch.as_tensor(goal_frame)

    def score(actions: np.ndarray) -> np.ndarray:
        start = env.get_state()
        frames = np.stack([[env.simulate(a, render=True)[1] for a in sequence] for sequence in _restoring(env, start, actions)])
        env.set_state(start)
        return _best_distance(torch.from_numpy(frames), goal, sigma)

    return score


def _restoring(env, start: np.ndarray, actions: np.ndarray):
    """Yields each candidate sequence after putting the simulator back to `start`."""
    for sequence in actions:
        env.set_state(start)
        yield sequence
