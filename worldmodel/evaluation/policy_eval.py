"""Policy evaluation in imagination: the protocol, and statistics of how well imagined scores rank
and match real ones."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from worldmodel.data.format import Episode
from worldmodel.evaluation.metrics import mmrv, pearson, spearman


def policy_statistics(names: Sequence[str], real: np.ndarray, imagined: np.ndarray) -> dict:
    """real, imagined: (P, M) returns of P policies over M episodes each (paired: same start).

    Returns per-policy means and return errors, and across policies Pearson r, Spearman rho and
    MMRV of the mean returns (MMRV in return units; 0 = every pair ordered as in reality).
    """
    real, imagined = np.asarray(real, float), np.asarray(imagined, float)
    if real.shape != imagined.shape or real.ndim != 2 or len(names) != len(real):
        raise ValueError(f"real and imagined must both be (policies, episodes) with {len(names)} policies; got {real.shape}, {imagined.shape}.")
    real_mean, imagined_mean = real.mean(1), imagined.mean(1)
    per_policy = {
        name: {"real_return": float(r), "imagined_return": float(i), "return_error": float(i - r),
               "abs_episode_error": float(np.abs(imagined[p] - real[p]).mean())}
        for p, (name, r, i) in enumerate(zip(names, real_mean, imagined_mean))
    }
    return {
        "policies": per_policy,
        "pearson_r": pearson(real_mean, imagined_mean),
        "spearman_rho": spearman(real_mean, imagined_mean),
        "mmrv": mmrv(real_mean, imagined_mean),
        "episode_pearson_r": pearson(real.ravel(), imagined.ravel()),
    }


def evaluate_in_imagination(
    world_model,
    names: Sequence[str],
    episodes: Sequence[Episode],
    batch_size: int = 32,
    seed: int = 0,
    success_from_reward: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None = None,
    progress: Callable[[range], Iterable[int]] = iter,
) -> dict:
    """Scores P policies in imagination against their real episodes (M each, grouped by policy:
    episodes[p * M + j]; paired starts across policies make the comparison fair).

    Each real episode's first K frames start an imagined one that replays the episode's actions
    open loop (scripted policies read simulator state, which imagination has not); the rewards of
    the same steps, K-1 to the shortest episode's end, are summed on both sides. Success is the
    task's test at the last step; in imagination `success_from_reward(last predicted rewards (N,),
    last actions (N, A))` judges it where the reward determines the task distance (None: n/a).
    Returns `policy_statistics` plus per-policy real/imagined success, the success Pearson r, the
    returns and the scored steps.
    """
    k, p = world_model.context, len(names)
    if not episodes or len(episodes) % p:
        raise ValueError(f"episodes must hold the same number of episodes for each of the {p} policies, got {len(episodes)}.")
    steps = min(len(e.actions) for e in episodes)
    if steps < k:
        raise ValueError(f"episodes of {steps} steps are too short for {k} context frames.")
    frames = torch.from_numpy(np.stack([e.frames[:k] for e in episodes]))
    actions = torch.from_numpy(np.stack([e.actions[:steps] for e in episodes]))
    real = np.stack([e.rewards[k - 1 : steps].sum() for e in episodes]).reshape(p, -1)
    states = None
    if world_model.state_shape is not None:
        states = torch.from_numpy(np.stack([np.concatenate([e.qpos[:k], e.qvel[:k]], -1) for e in episodes]).astype(np.float32))
    generator = torch.Generator().manual_seed(seed)
    rewards = []
    for start in progress(range(0, len(episodes), batch_size)):
        rows = slice(start, start + batch_size)
        rewards.append(world_model.imagine(frames[rows], actions[rows, : k - 1], actions[rows, k - 1 :], generator,
                                           None if states is None else states[rows]).rewards.numpy())
    rewards = np.concatenate(rewards)  # (P*M, steps-K+1)
    imagined = rewards.sum(1).reshape(p, -1)
    stats = policy_statistics(names, real, imagined)
    real_success = np.asarray([e.success[-1] for e in episodes]).reshape(p, -1).mean(1)
    imagined_success = None if success_from_reward is None else success_from_reward(rewards[:, -1], actions[:, -1].numpy())
    if imagined_success is not None:
        imagined_success = imagined_success.reshape(p, -1).mean(1)
    for i, name in enumerate(names):
        stats["policies"][name]["real_success"] = float(real_success[i])
        stats["policies"][name]["imagined_success"] = None if imagined_success is None else float(imagined_success[i])
    # As WorldGym reports it: the correlation of per-policy success rates (None where either side is constant).
    success_r = float("nan") if imagined_success is None else pearson(real_success, imagined_success)
    stats["success_pearson_r"] = None if np.isnan(success_r) else success_r
    if imagined_success is None:
        stats["success_pearson_r_missing"] = "the task's reward does not tell success in imagination"
    elif np.isnan(success_r):
        constant = [side for side, v in (("real", real_success), ("imagined", imagined_success)) if np.std(v) == 0]
        stats["success_pearson_r_missing"] = f"{' and '.join(constant) or 'one side'} success is the same for every policy" if len(real_success) > 1 else "one policy"
    return {**stats, "scored_steps": [k - 1, steps], "real_returns": real.tolist(), "imagined_returns": imagined.tolist()}
