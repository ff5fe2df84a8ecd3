"""Planners: CEM and MPPI over action sequences in a box, registered in PLANNERS.

A planner follows the `Planner` protocol (reset / plan / shift); a new sampling-based one
subclasses `GaussianPlanner` and writes only `_refit`, registered with `@PLANNERS.register(name)`.
CEM and MPPI both keep a Gaussian (mean, std) per step and action dimension, sample `samples` sequences per
iteration, score them all in one call (`score(actions (N, H, A)) -> (N,)`, higher is better) and
refit. `plan` returns the mean sequence; after executing k of its steps, `shift(k)` warm-starts the
next plan from the rest (model-predictive control).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from worldmodel.registry import Registry

Score = Callable[[np.ndarray], np.ndarray]  # (N, H, A) float32 in the box -> (N,) higher is better


@dataclass(frozen=True)
class PlannerConfig:
    """horizon: steps planned; samples per iteration (iCEM: the first); elites (CEM, iCEM);
    temperature (MPPI, in units of the score); init_std and min_std as fractions of the action
    range; warm_start: shift the last plan. iCEM only: noise_beta, the exponent of its coloured
    noise (0 white); decay, the population's shrink factor per iteration; keep_elites, the fraction
    of elites carried to the next iteration and plan; momentum, the weight of the old mean and std."""

    horizon: int = 10
    samples: int = 64
    iterations: int = 4
    elites: int = 8
    temperature: float = 1.0
    init_std: float = 0.5
    min_std: float = 0.05
    warm_start: bool = True
    noise_beta: float = 2.0
    decay: float = 1.25
    keep_elites: float = 0.3
    momentum: float = 0.1

    def __post_init__(self):
        if self.horizon < 1 or self.samples < 2 or self.iterations < 1:
            raise ValueError(f"horizon >= 1, samples >= 2 and iterations >= 1 needed, got {self}.")
        if not 1 <= self.elites <= self.samples:
            raise ValueError(f"elites must be in [1, samples={self.samples}], got {self.elites}.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")
        if self.decay < 1 or not 0 <= self.keep_elites <= 1 or not 0 <= self.momentum < 1 or self.noise_beta < 0:
            raise ValueError(f"decay >= 1, keep_elites in [0, 1], momentum in [0, 1) and noise_beta >= 0 needed, got {self}.")


class Planner(Protocol):
    """What model-predictive control needs of a planner."""

    def reset(self) -> None:
        """Forgets the warm start (a new episode)."""

    def plan(self, score: Score, rng: np.random.Generator) -> np.ndarray:
        """(H, A) actions maximising `score`."""

    def shift(self, k: int) -> None:
        """k planned steps were executed: warm-start the next plan from the rest."""


PLANNERS: Registry[Callable[..., Planner]] = Registry("planner")


class GaussianPlanner:
    """A Gaussian (mean, std) per step and action dimension, refit each iteration by `_refit`."""

    def __init__(self, low: np.ndarray, high: np.ndarray, cfg: PlannerConfig):
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        if self.low.shape != self.high.shape or not (self.low < self.high).all():
            raise ValueError(f"action bounds must be arrays of one shape with low < high, got {low} and {high}.")
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        """Forgets the warm start (a new episode)."""
        self.mean = np.broadcast_to((self.low + self.high) / 2, (self.cfg.horizon, *self.low.shape)).copy()

    def shift(self, k: int) -> None:
        """Drops the first k planned steps; the freed tail restarts at the box centre."""
        if not self.cfg.warm_start:
            return self.reset()
        centre = (self.low + self.high) / 2
        self.mean = np.concatenate([self.mean[k:], np.broadcast_to(centre, (min(k, self.cfg.horizon), *self.low.shape))])

    def plan(self, score: Score, rng: np.random.Generator) -> np.ndarray:
        """(H, A) actions maximising `score`, from `iterations` rounds of `samples` candidates."""
        span = self.high - self.low
        mean = self.mean.copy()
        std = np.broadcast_to(self.cfg.init_std * span, mean.shape).copy()
        for _ in range(self.cfg.iterations):
            candidates = np.clip(mean + std * rng.standard_normal((self.cfg.samples, *mean.shape)), self.low, self.high)
            candidates[0] = mean  # keep the incumbent: the plan never gets worse for lack of a lucky draw
            scores = np.asarray(score(candidates.astype(np.float32)), np.float64)
            if scores.shape != (self.cfg.samples,) or not np.isfinite(scores).all():
                raise ValueError(f"score must return {self.cfg.samples} finite values, got shape {scores.shape}.")
            mean, std = self._refit(candidates, scores, std)
            std = np.maximum(std, self.cfg.min_std * span)
        self.mean = mean
        return mean.astype(np.float32)

    def _refit(self, candidates: np.ndarray, scores: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """candidates (N, H, A), scores (N,), the current std (H, A) -> the new (mean, std)."""
        raise NotImplementedError


@PLANNERS.register("cem")
class CEM(GaussianPlanner):
    """Cross-entropy method: refit mean and std to the `elites` best candidates."""

    def _refit(self, candidates, scores, std):
        elite = candidates[np.argsort(scores)[-self.cfg.elites :]]
        return elite.mean(0), elite.std(0)


@PLANNERS.register("mppi")
class MPPI(GaussianPlanner):
    """Model-predictive path integral: mean and std weighted by softmax(score / temperature)."""

    def _refit(self, candidates, scores, std):
        w = np.exp((scores - scores.max()) / self.cfg.temperature)
        w = (w / w.sum())[:, None, None]
        mean = (w * candidates).sum(0)
        return mean, np.sqrt((w * (candidates - mean) ** 2).sum(0))


def make_planner(name: str, low: np.ndarray, high: np.ndarray, cfg: PlannerConfig) -> Planner:
    """The planner `name` (a name in PLANNERS) over actions in [low, high]."""
    return PLANNERS.get(name)(low, high, cfg)
