"""Training the state track (`models.state_dynamics.StateDynamics`) on the recorded states and actions.

It is a stage of its own, before the denoiser's: a small MLP on a few numbers per frame, it sees
hundreds of thousands of transitions in the time the denoiser sees thousands, and it learns its
long rollouts from windows much longer than the denoiser's. The states of the training episodes
are held in memory (nq + nv floats per frame and the actions: 10^6 frames of reacher take 40 MB).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodel.data.reader import RolloutReader
from worldmodel.models.state_dynamics import StateDynamics
from worldmodel.threads import small_ops

logger = logging.getLogger(__name__)


def load_transitions(path: str | Path, episodes: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per episode: states (T+1, nq+nv) float32 [qpos, qvel] and actions (T, A) float32."""
    states, actions = [], []
    with RolloutReader(path) as reader:
        for e in episodes:
            states.append(reader.states(e))
            actions.append(reader.steps("actions", e).reshape(int(reader.lengths[e]), -1).astype(np.float32))
    return states, actions


STEPS_PER_RUN_STEP = 5  # "auto": 4,000 state-track steps for the measured 800-step recipe


def state_track_steps(steps: int | str, run_steps: int) -> int:
    """The state track's optimiser steps: `steps` (dynamics.steps), or for "auto" STEPS_PER_RUN_STEP
    x the run's own steps, so a short run is short in both stages."""
    return STEPS_PER_RUN_STEP * int(run_steps) if steps == "auto" else int(steps)


def train_dynamics(
    dynamics: StateDynamics,
    path: str | Path,
    episodes: Sequence[int],
    *,
    steps: int,
    batch_size: int,
    horizon: int,
    lr: float,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> float:
    """Fits `dynamics` (its statistics already set) in place: `steps` AdamW steps (cosine decay
    from `lr`) on batches of `batch_size` windows of `horizon` steps (shorter episodes give
    whole-episode windows). Returns the last batch's loss."""
    states, actions = load_transitions(path, episodes)
    horizon = max(1, min(int(horizon), min(len(a) for a in actions)))
    # Every window start as (first frame, first step) in the episodes laid end to end.
    frame0 = np.cumsum([0] + [len(s) for s in states[:-1]])
    step0 = np.cumsum([0] + [len(a) for a in actions[:-1]])
    starts = torch.from_numpy(
        np.concatenate(
            [
                np.stack([f + np.arange(len(a) - horizon + 1), s + np.arange(len(a) - horizon + 1)], 1)
                for f, s, a in zip(frame0, step0, actions)
            ]
        )
    )
    all_states = torch.from_numpy(np.concatenate(states)).to(device)
    all_actions = torch.from_numpy(np.concatenate(actions)).to(device)
    offsets = torch.arange(horizon + 1)
    dynamics.to(device).train()
    optimizer = torch.optim.AdamW(dynamics.parameters(), lr=float(lr), weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / max(1, steps))))
    generator = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    with small_ops():
        for _ in tqdm(range(steps), desc="state dynamics", disable=not progress, dynamic_ncols=True):
            first = starts[torch.randint(len(starts), (int(batch_size),), generator=generator)]
            loss = dynamics.loss(all_states[first[:, :1] + offsets], all_actions[first[:, 1:] + offsets[:-1]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    dynamics.eval().requires_grad_(False)
    logger.info("state dynamics: %d steps on %d windows of %d steps, last loss %.5f", steps, len(starts), horizon, loss.item())
    return float(loss.item())
