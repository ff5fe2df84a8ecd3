"""Policy evaluation in imagination: the protocol, and statistics of how well imagined scores rank
and match real ones."""

from __future__ import annotations

import copy
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from worldmodel.data.format import Episode
from worldmodel.evaluation.metrics import mmrv, pearson, spearman
from worldmodel.policy import Policy, policy_action


def bootstrap_interval(samples: np.ndarray, rng: np.random.Generator, resamples: int = 2000, level: float = 0.95) -> np.ndarray:
    """samples: (P, M), M episodes of P policies -> (P, 2) percentile bootstrap interval of each
    policy's mean (its episodes resampled with replacement)."""
    samples = np.asarray(samples, float)
    idx = rng.integers(samples.shape[1], size=(resamples, samples.shape[1]))
    means = samples[:, idx].mean(-1)  # (P, resamples)
    tail = (1 - level) / 2 * 100
    return np.percentile(means, [tail, 100 - tail], axis=1).T


def policy_statistics(names: Sequence[str], real: np.ndarray, imagined: np.ndarray, seed: int = 0) -> dict:
    """real, imagined: (P, M) returns of P policies over M episodes each (paired: same start).

    Returns per-policy means, return errors and 95 % bootstrap intervals of both means, and across
    policies Pearson r, Spearman rho and MMRV of the mean returns: in return units, and normalised
    by the real returns' range (SIMPLER's convention; 0 = every pair ordered as in reality).
    """
    real, imagined = np.asarray(real, float), np.asarray(imagined, float)
    if real.shape != imagined.shape or real.ndim != 2 or len(names) != len(real):
        raise ValueError(f"real and imagined must both be (policies, episodes) with {len(names)} policies; got {real.shape}, {imagined.shape}.")
    real_mean, imagined_mean = real.mean(1), imagined.mean(1)
    rng = np.random.default_rng(seed)
    real_ci, imagined_ci = bootstrap_interval(real, rng), bootstrap_interval(imagined, rng)
    per_policy = {
        name: {"real_return": float(real_mean[p]), "imagined_return": float(imagined_mean[p]),
               "return_error": float(imagined_mean[p] - real_mean[p]),
               "abs_episode_error": float(np.abs(imagined[p] - real[p]).mean()),
               "real_return_ci": real_ci[p].tolist(), "imagined_return_ci": imagined_ci[p].tolist()}
        for p, name in enumerate(names)
    }
    spread = real_mean.max() - real_mean.min()
    violation = mmrv(real_mean, imagined_mean)
    return {
        "policies": per_policy,
        "pearson_r": pearson(real_mean, imagined_mean),
        "spearman_rho": spearman(real_mean, imagined_mean),
        "mmrv": violation,
        "normalized_mmrv": violation / spread if spread > 0 else float("nan"),
        "episode_pearson_r": pearson(real.ravel(), imagined.ravel()),
    }


def imagine_closed_loop(world_model, policies: Sequence[Policy], episodes: Sequence[Episode], steps: int,
                        generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Runs one pixel policy per episode on imagined frames: each starts from its episode's first K
    real frames (the policy, reset with the episode's seed, first sees those frames, as it did in
    MuJoCo, and the actions it took there lead up to them), then acts on what DiffusionWorld imagines
    until step `steps`. Returns rewards (N, steps-K+1), actions (N, steps-K+1, *A) and success
    probabilities (N, steps-K+1) (None without a success head)."""
    k = world_model.context
    low, high = (np.asarray(world_model.action_space[key], np.float32) for key in ("low", "high"))
    for policy, episode in zip(policies, episodes):
        policy.reset(np.random.default_rng(episode.seed))
        for t in range(k - 1):
            policy.act(episode.frames[t], {"step": t})
    window = world_model.window(torch.from_numpy(np.stack([e.frames[:k] for e in episodes])),
                                torch.from_numpy(np.stack([e.actions[: k - 1] for e in episodes])), _context_states(world_model, episodes))
    rewards, actions, success = [], [], []
    for t in range(k - 1, steps):
        frames = window.last_frame.cpu().numpy()
        action = np.stack([policy_action(policy, frame, {"step": t}, low, high) for policy, frame in zip(policies, frames)])
        window, out = world_model.step(window, torch.from_numpy(action), generator)
        rewards.append(out.reward.cpu().numpy())
        actions.append(action)
        success.append(None if out.success_prob is None else out.success_prob.cpu().numpy())
    return np.stack(rewards, 1), np.stack(actions, 1), None if success[0] is None else np.stack(success, 1)


def _context_states(world_model, episodes: Sequence[Episode]) -> torch.Tensor | None:
    if world_model.state_shape is None:
        return None
    k = world_model.context
    return torch.from_numpy(np.stack([np.concatenate([e.qpos[:k], e.qvel[:k]], -1) for e in episodes]).astype(np.float32))


def evaluate_in_imagination(
    world_model,
    names: Sequence[str],
    episodes: Sequence[Episode],
    batch_size: int = 32,
    seed: int = 0,
    success_from_reward: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None = None,
    progress: Callable[[range], Iterable[int]] = iter,
    policies: Sequence[Policy] | None = None,
) -> dict:
    """Scores P policies in imagination against their real episodes (M each, grouped by policy:
    episodes[p * M + j]; paired starts across policies make the comparison fair).

    Each real episode's first K frames start an imagined one. A policy that observes state (the
    scripted ones, or any without `policies`) has its episode's actions replayed open loop, as
    imagination has no state vector to show it; a pixel policy (`policies[p].observes == "pixels"`)
    acts on the imagined frames, closed loop (`imagine_closed_loop`, on copies of it). The rewards
    of the same steps, K-1 to the shortest episode's end, are summed on both sides. Success is the
    task's test at the last step; in imagination `success_from_reward(last predicted rewards (N,),
    last actions (N, A))` judges it where the reward determines the task distance, else the model's
    success head (probability > 0.5; with both, the head's rate is kept as `imagined_success_head`;
    neither: n/a). Returns `policy_statistics` plus per-policy real/imagined success and loop, the
    success Pearson r and max error, the returns and the scored steps.
    """
    k, p = world_model.context, len(names)
    if not episodes or len(episodes) % p:
        raise ValueError(f"episodes must hold the same number of episodes for each of the {p} policies, got {len(episodes)}.")
    if policies is not None and len(policies) != p:
        raise ValueError(f"give one policy per name: {p} names, {len(policies)} policies.")
    steps = min(len(e.actions) for e in episodes)
    if steps < k:
        raise ValueError(f"episodes of {steps} steps are too short for {k} context frames.")
    m = len(episodes) // p
    closed = [policies is not None and policies[i].observes == "pixels" for i in range(p)]
    actions = np.stack([e.actions[:steps] for e in episodes])
    real = np.stack([e.rewards[k - 1 : steps].sum() for e in episodes]).reshape(p, -1)
    generator = torch.Generator().manual_seed(seed)
    rewards = np.zeros((len(episodes), steps - k + 1), np.float32)
    success_prob = np.full(len(episodes), np.nan)  # at the last scored step, from a success head
    open_rows = [r for r in range(len(episodes)) if not closed[r // m]]
    closed_rows = [r for r in range(len(episodes)) if closed[r // m]]
    batches = [open_rows[i : i + batch_size] for i in range(0, len(open_rows), batch_size)]
    batches += [closed_rows[i : i + batch_size] for i in range(0, len(closed_rows), batch_size)]
    for b in progress(range(len(batches))):
        rows = batches[b]
        chosen = [episodes[r] for r in rows]
        if closed[rows[0] // m]:
            copies = [copy.deepcopy(policies[r // m]) for r in rows]
            rewards[rows], actions[rows, k - 1 :], success = imagine_closed_loop(world_model, copies, chosen, steps, generator)
        else:
            frames = torch.from_numpy(np.stack([e.frames[:k] for e in chosen]))
            batch_actions = torch.from_numpy(actions[rows])
            out = world_model.imagine(frames, batch_actions[:, : k - 1], batch_actions[:, k - 1 :], generator, _context_states(world_model, chosen))
            rewards[rows] = out.rewards.numpy()
            success = None if getattr(out, "success_prob", None) is None else out.success_prob.numpy()
        if success is not None:
            success_prob[rows] = success[:, -1]
    imagined = rewards.sum(1).reshape(p, -1)
    stats = policy_statistics(names, real, imagined, seed)
    real_success = np.asarray([e.success[-1] for e in episodes]).reshape(p, -1).mean(1)
    from_reward = None if success_from_reward is None else success_from_reward(rewards[:, -1], actions[:, -1])
    from_reward = None if from_reward is None else from_reward.reshape(p, -1).mean(1)
    from_head = None if np.isnan(success_prob).any() else (success_prob > 0.5).reshape(p, -1).mean(1)
    # Measured on reacher (README): the distance the predicted reward implies tells success better
    # than the success head, so the head judges only where the reward cannot (pusher).
    imagined_success, source = (from_reward, "reward") if from_reward is not None else (from_head, "success head")
    stats["success_source"] = None if imagined_success is None else source
    for i, name in enumerate(names):
        stats["policies"][name]["loop"] = "closed" if closed[i] else "open"
        stats["policies"][name]["real_success"] = float(real_success[i])
        stats["policies"][name]["imagined_success"] = None if imagined_success is None else float(imagined_success[i])
        if from_head is not None and source == "reward":
            stats["policies"][name]["imagined_success_head"] = float(from_head[i])
    # Calibration: the worst per-policy gap between imagined and real success rates.
    stats["success_max_abs_error"] = None if imagined_success is None else float(np.abs(imagined_success - real_success).max())
    # As WorldGym reports it: the correlation of per-policy success rates (None where either side is constant).
    success_r = float("nan") if imagined_success is None else pearson(real_success, imagined_success)
    stats["success_pearson_r"] = None if np.isnan(success_r) else success_r
    if imagined_success is None:
        stats["success_pearson_r_missing"] = "the model has no success head and the task's reward does not tell success"
    elif np.isnan(success_r):
        constant = [side for side, v in (("real", real_success), ("imagined", imagined_success)) if np.std(v) == 0]
        stats["success_pearson_r_missing"] = f"{' and '.join(constant) or 'one side'} success is the same for every policy" if len(real_success) > 1 else "one policy"
    return {**stats, "scored_steps": [k - 1, steps], "real_returns": real.tolist(), "imagined_returns": imagined.tolist()}
