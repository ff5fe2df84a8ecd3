"""iCEM (Pinneri et al., 2020, "Sample-efficient cross-entropy method for real-time planning"):
CEM with temporally correlated (coloured) noise, a population that shrinks each iteration, elites
kept from one iteration (and, shifted, from one plan) to the next, and the best sequence ever
scored returned rather than the mean. Measured on reacher in docs/planning.md.
"""

from __future__ import annotations

import numpy as np

from worldmodel.planning.optimizers import PLANNERS, GaussianPlanner, Score


def coloured_noise(beta: float, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise of `shape` (..., T, A) whose power spectrum along T falls as
    1 / f^beta: 0 is white, 2 (brown) drifts smoothly, as a torque held for several steps does."""
    *lead, t, a = shape
    freqs = np.fft.rfftfreq(t)
    freqs[0] = freqs[1] if t > 1 else 1.0  # no infinite power at f = 0
    scale = freqs ** (-beta / 2)
    spectrum = scale[:, None] * (rng.standard_normal((*lead, len(freqs), a)) + 1j * rng.standard_normal((*lead, len(freqs), a)))
    # Divided by the std the spectrum gives every step, not by each sample's own: over a short
    # horizon a sample's own std is often small, and dividing by it blows its constant part up.
    weights = np.full(len(freqs), 4.0)
    weights[0] = 1.0  # irfft keeps the real part of f = 0 and of the Nyquist frequency (even T) only
    if t % 2 == 0 and t > 1:
        weights[-1] = 1.0
    return np.fft.irfft(spectrum, n=t, axis=-2) * t / np.sqrt((weights * scale**2).sum())


@PLANNERS.register("icem")
class ICEM(GaussianPlanner):
    """iCEM: `samples` candidates in the first iteration, `samples / decay^i` in iteration i (at
    least 2 * elites); coloured noise of exponent `noise_beta`; the best `keep_elites` fraction of
    the elites joins the next iteration, and, shifted by the executed steps, the next plan; the
    mean moves with `momentum` (the weight of the old mean)."""

    def reset(self) -> None:
        super().reset()
        self._kept = np.empty((0, *self.mean.shape), np.float32)

    def shift(self, k: int) -> None:
        kept = self._kept
        super().shift(k)
        if not self.cfg.warm_start or k >= self.cfg.horizon:  # nothing of the old plan is left
            self._kept = kept[:0]
        else:
            centre = (self.low + self.high) / 2
            self._kept = np.concatenate([kept[:, k:], np.broadcast_to(centre, (len(kept), k, *self.low.shape))], axis=1)

    def plan(self, score: Score, rng: np.random.Generator) -> np.ndarray:
        cfg, span = self.cfg, self.high - self.low
        mean = self.mean.copy()
        std = np.broadcast_to(cfg.init_std * span, mean.shape).copy()
        best, best_score, kept = mean, -np.inf, self._kept
        for i in range(cfg.iterations):
            n = max(int(round(cfg.samples / cfg.decay**i)), 2 * cfg.elites)
            noise = coloured_noise(cfg.noise_beta, (n, *mean.shape), rng)
            candidates = np.clip(mean + std * noise, self.low, self.high)
            candidates = np.concatenate([candidates, kept, mean[None]] if i == cfg.iterations - 1 else [candidates, kept])
            scores = np.asarray(score(candidates.astype(np.float32)), np.float64)
            if scores.shape != (len(candidates),) or not np.isfinite(scores).all():
                raise ValueError(f"score must return {len(candidates)} finite values, got shape {scores.shape}.")
            order = np.argsort(scores)[::-1]
            elites = candidates[order[: cfg.elites]]
            if scores[order[0]] > best_score:
                best, best_score = candidates[order[0]], scores[order[0]]
            kept = elites[: int(cfg.keep_elites * cfg.elites)]
            mean = cfg.momentum * mean + (1 - cfg.momentum) * elites.mean(0)
            std = np.maximum(cfg.momentum * std + (1 - cfg.momentum) * elites.std(0), cfg.min_std * span)
        self.mean, self._kept = mean, kept.astype(np.float32)
        return best.astype(np.float32)
