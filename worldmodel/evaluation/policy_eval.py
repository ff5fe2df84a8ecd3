"""Policy evaluation in imagination: the protocol, and statistics of how well imagined scores rank
and match real ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from worldmodel.data.format import Episode
from worldmodel.diffusion import Generators
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


MIN_POLICIES = 4  # below this, correlations across policies are near-certain to look perfect


def policy_statistics(names: Sequence[str], real: np.ndarray, imagined: np.ndarray, seed: int = 0) -> dict:
    """real, imagined: (P, M) returns of P policies over M episodes each (paired: same start).

    Returns per-policy means, return errors and 95 % bootstrap intervals of both means, and across
    policies Pearson r, Spearman rho and MMRV of the mean returns: in return units, and normalised
    by the real returns' range (SIMPLER's convention; 0 = every pair ordered as in reality); with
    fewer than `MIN_POLICIES` policies, a caveat that says so (else None).
    """
    real, imagined = np.asarray(real, float), np.asarray(imagined, float)
    if real.shape != imagined.shape or real.ndim != 2 or len(names) != len(real):
        raise ValueError(
            f"real and imagined must both be (policies, episodes) with {len(names)} policies; got {real.shape}, {imagined.shape}."
        )
    real_mean, imagined_mean = real.mean(1), imagined.mean(1)
    rng = np.random.default_rng(seed)
    real_ci, imagined_ci = bootstrap_interval(real, rng), bootstrap_interval(imagined, rng)
    per_policy = {
        name: {
            "real_return": float(real_mean[p]),
            "imagined_return": float(imagined_mean[p]),
            "return_error": float(imagined_mean[p] - real_mean[p]),
            "abs_episode_error": float(np.abs(imagined[p] - real[p]).mean()),
            "real_return_ci": real_ci[p].tolist(),
            "imagined_return_ci": imagined_ci[p].tolist(),
        }
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
        "caveat": None
        if len(names) >= MIN_POLICIES
        else (
            f"Only {len(names)} policies: the correlations and MMRV across policies mean little below {MIN_POLICIES} "
            "(two points always correlate perfectly); score more policies to rank them."
        ),
    }


class StateObserver(Protocol):
    """The source task's own observation of a simulator state (`envs.mujoco.observations`); observing
    a state also puts the shadow that privileged (scripted) policies read in it."""

    goal_based: bool

    def observe(self, state: np.ndarray, goal: np.ndarray | None = None) -> Any: ...

    def flat(self, obs: Any) -> np.ndarray: ...

    def success(self, state: np.ndarray, goal: np.ndarray | None = None) -> bool | None: ...


LOOPS = ("closed", "open")


def policy_observation(
    policy: Policy, frame: np.ndarray, state: np.ndarray | None, observer: StateObserver | None, goal: np.ndarray | None
) -> Any:
    """What `policy` sees of a world: the frame (a pixel policy) or the task's observation vector of
    the state, flattened where the task's is a dict, as in recording (`info["state"]`)."""
    if policy.observes == "pixels":
        return frame
    if state is None or observer is None:
        raise ValueError(
            f"policy {policy.name!r} observes state, and this world model imagines none (no state track): train "
            "one with dynamics=state_mlp, or replay the policy's real actions with loop=open (a diagnostic)."
        )
    return observer.flat(observer.observe(state, goal))


@dataclass
class Rollouts:
    """B imagined episodes: rewards (B, T), actions (B, T, *A), success_prob (B,) of the success
    head after the last step (None without one), last_state (B, nq+nv) the imagined state after it
    (None without a state track)."""

    rewards: np.ndarray
    actions: np.ndarray
    success_prob: np.ndarray | None
    last_state: np.ndarray | None


def run_closed_loop(
    world_model,
    policies: Sequence[Policy],
    window,
    steps: int,
    generator: Generators = None,
    observer: StateObserver | None = None,
    goals: np.ndarray | None = None,
) -> Rollouts:
    """B policies, one per world of `window` and already reset, act on what their worlds imagine for
    `steps` steps: the frame (pixel policies) or the task's observation of the imagined state. First
    each acts on the window's K-1 earlier context frames, as it did when they were recorded (its
    actions there are the recorded ones). goals: (B, G), a goal-based task's goal per world."""
    k = world_model.context
    low, high = (np.asarray(world_model.action_space[key], np.float32) for key in ("low", "high"))
    frames = window.frames.cpu().numpy()
    states = None if window.states is None else window.states.cpu().double().numpy()

    def observe(i: int, frame: np.ndarray, state: np.ndarray | None) -> Any:
        return policy_observation(policies[i], frame, state, observer, None if goals is None else goals[i])

    for t in range(k - 1):
        for i, policy in enumerate(policies):
            policy.act(observe(i, frames[i, t], None if states is None else states[i, t]), {"step": t})
    rewards, actions = [], []
    for t in range(k - 1, k - 1 + steps):
        frames = window.last_frame.cpu().numpy()
        states = None if window.states is None else window.states[:, -1].cpu().double().numpy()
        action = np.stack(
            [
                policy_action(policy, observe(i, frames[i], None if states is None else states[i]), {"step": t}, low, high)
                for i, policy in enumerate(policies)
            ]
        )
        window, out = world_model.step(window, torch.from_numpy(action), generator)
        rewards.append(out.reward.cpu().numpy())
        actions.append(action)
    return Rollouts(
        np.stack(rewards, 1),
        np.stack(actions, 1),
        None if out.success_prob is None else out.success_prob.cpu().numpy(),
        None if out.state is None else out.state.cpu().double().numpy(),
    )


def fresh_closed_loop(
    world_model, factories: Sequence[Callable[[], Policy]], seeds: Sequence[int], window, steps: int, **options
) -> Rollouts:
    """`run_closed_loop` (its `options`: generator, observer, goals) with a fresh policy per world
    from `factories`, each reset with its seed."""
    policies = [make() for make in factories]
    for policy, seed in zip(policies, seeds):
        policy.reset(np.random.default_rng(seed))
    return run_closed_loop(world_model, policies, window, steps, **options)


def judge_success(
    rollouts: Rollouts,
    observer: StateObserver | None,
    goals: np.ndarray | None,
    success_from_reward: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None,
) -> dict[str, np.ndarray]:
    """Every way imagination can tell whether each episode ends in success (the task's test after
    its last step), as (B,) 0/1 arrays by source: "state", the task's own test on the imagined state
    (`observer.success`); "reward", on the distance the last predicted reward implies
    (`success_from_reward`); "success head", its probability > 0.5. Sources that cannot judge are
    absent."""
    judged = {}
    if observer is not None and rollouts.last_state is not None:
        verdicts = [observer.success(state, None if goals is None else goals[i]) for i, state in enumerate(rollouts.last_state)]
        if None not in verdicts:
            judged["state"] = np.asarray(verdicts, float)
    from_reward = None if success_from_reward is None else success_from_reward(rollouts.rewards[:, -1], rollouts.actions[:, -1])
    if from_reward is not None:
        judged["reward"] = np.asarray(from_reward, float)
    if rollouts.success_prob is not None:
        judged["success head"] = (rollouts.success_prob > 0.5).astype(float)
    return judged


# Which judge imagined success comes from when several can (`judge_success`), best first: measured
# on reacher (docs/closed_loop.md).
SUCCESS_SOURCES = ("state", "reward", "success head")


def episode_window(world_model, episodes: Sequence[Episode]):
    """The start window of each real episode: its first K frames, the actions between them and (a
    model with a state track) their states."""
    k = world_model.context
    return world_model.window(
        torch.from_numpy(np.stack([e.frames[:k] for e in episodes])),
        torch.from_numpy(np.stack([e.actions[: k - 1] for e in episodes])),
        _context_states(world_model, episodes),
    )


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
    policies: Sequence[Callable[[], Policy]] | None = None,
    loop: str = "closed",
    observer: StateObserver | None = None,
    goals: np.ndarray | None = None,
) -> dict:
    """Scores P policies in imagination against their real episodes (M each, grouped by policy:
    episodes[p * M + j]; paired starts across policies make the comparison fair).

    Each real episode's first K frames (and states) start an imagined one. loop="closed" (the
    protocol): a fresh policy from `policies[p]()`, reset with the episode's seed, acts on what its
    world imagines (`run_closed_loop`): pixel policies on the frames, state policies on the task's
    observation of the imagined state (`observer`), scripted ones on the shadow that observing puts
    in that state (build them on `observer.shadow`). loop="open" (a diagnostic): every episode's real
    actions are replayed. goals: (P*M, G) each episode's goal, for a goal-based task. The rewards of
    the same steps, K-1 to the shortest episode's end, are summed on both sides. Success is the
    task's test at the last step; in imagination the first of SUCCESS_SOURCES that can judge it
    (`judge_success`; every other one's rate is kept as `imagined_success_<source>`; none: n/a).
    Returns `policy_statistics` plus the loop, per-policy real/imagined success, the success Pearson
    r and max error, the returns and the scored steps.
    """
    k, p = world_model.context, len(names)
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}.")
    if not episodes or len(episodes) % p:
        raise ValueError(f"episodes must hold the same number of episodes for each of the {p} policies, got {len(episodes)}.")
    if loop == "closed" and (policies is None or len(policies) != p):
        raise ValueError(
            f"closed loop needs one policy (a factory of fresh copies) per name: {p} names, "
            f"{'no' if policies is None else len(policies)} policies."
        )
    steps = min(len(e.actions) for e in episodes)
    if steps < k:
        raise ValueError(f"episodes of {steps} steps are too short for {k} context frames.")
    m = len(episodes) // p
    actions = np.stack([e.actions[:steps] for e in episodes])
    real = np.stack([e.rewards[k - 1 : steps].sum() for e in episodes]).reshape(p, -1)
    generator = torch.Generator().manual_seed(seed)
    rewards = np.zeros((len(episodes), steps - k + 1), np.float32)
    judged: dict[str, np.ndarray] = {}  # source -> (N,) imagined success of every episode
    batches = [list(range(i, min(i + batch_size, len(episodes)))) for i in range(0, len(episodes), batch_size)]
    for b in progress(range(len(batches))):
        rows = batches[b]
        chosen = [episodes[r] for r in rows]
        if loop == "closed":
            out = fresh_closed_loop(
                world_model,
                [policies[r // m] for r in rows],
                [e.seed for e in chosen],
                episode_window(world_model, chosen),
                steps - k + 1,
                generator=generator,
                observer=observer,
                goals=None if goals is None else goals[rows],
            )
        else:
            frames = torch.from_numpy(np.stack([e.frames[:k] for e in chosen]))
            batch_actions = torch.from_numpy(actions[rows])
            imagined = world_model.imagine(
                frames, batch_actions[:, : k - 1], batch_actions[:, k - 1 :], generator, _context_states(world_model, chosen)
            )
            success = getattr(imagined, "success_prob", None)
            states = getattr(imagined, "states", None)
            out = Rollouts(
                imagined.rewards.numpy(),
                actions[rows, k - 1 :],
                None if success is None else success[:, -1].numpy(),
                None if states is None else states[:, -1].double().numpy(),
            )
        rewards[rows], actions[rows, k - 1 :] = out.rewards, out.actions
        for source, verdict in judge_success(out, observer, None if goals is None else goals[rows], success_from_reward).items():
            judged.setdefault(source, np.full(len(episodes), np.nan))[rows] = verdict
    imagined_returns = rewards.sum(1).reshape(p, -1)
    stats = policy_statistics(names, real, imagined_returns, seed)
    real_success = np.asarray([e.success[-1] for e in episodes]).reshape(p, -1).mean(1)
    rates = {source: verdict.reshape(p, -1).mean(1) for source, verdict in judged.items()}
    source = next((s for s in SUCCESS_SOURCES if s in rates), None)
    imagined_success = None if source is None else rates[source]
    stats["success_source"] = source
    stats["loop"] = loop
    for i, name in enumerate(names):
        stats["policies"][name]["loop"] = loop
        stats["policies"][name]["real_success"] = float(real_success[i])
        stats["policies"][name]["imagined_success"] = None if imagined_success is None else float(imagined_success[i])
        for other, rate in rates.items():
            if other != source:
                stats["policies"][name][f"imagined_success_{other.replace(' ', '_')}"] = float(rate[i])
    # Calibration: the worst per-policy gap between imagined and real success rates.
    stats["success_max_abs_error"] = None if imagined_success is None else float(np.abs(imagined_success - real_success).max())
    # As WorldGym reports it: the correlation of per-policy success rates (None where either side is constant).
    success_r = float("nan") if imagined_success is None else pearson(real_success, imagined_success)
    stats["success_pearson_r"] = None if np.isnan(success_r) else success_r
    if imagined_success is None:
        stats["success_pearson_r_missing"] = "neither the imagined state, the reward nor a success head tells success here"
    elif np.isnan(success_r):
        constant = [side for side, v in (("real", real_success), ("imagined", imagined_success)) if np.std(v) == 0]
        stats["success_pearson_r_missing"] = (
            f"{' and '.join(constant) or 'one side'} success is the same for every policy" if len(real_success) > 1 else "one policy"
        )
    return {**stats, "scored_steps": [k - 1, steps], "real_returns": real.tolist(), "imagined_returns": imagined_returns.tolist()}


def score_in_imagination(
    world_model,
    names: Sequence[str],
    policies: Sequence[Callable[[], Policy]],
    starts,
    steps: int,
    observer: StateObserver | None = None,
    goals: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 32,
    success_from_reward: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None = None,
    progress: Callable[[range], Iterable[int]] = iter,
) -> dict:
    """Scores P policies in imagination alone, no real episode needed: each runs closed loop
    (`run_closed_loop`) from every one of the M start windows `starts` (a `Window`: the checkpoint's
    bank or real contexts from a file; goals (M, G) for a goal-based task) for `steps` steps, reset
    with seed + j on start j (the same starts and seeds for every policy: a paired comparison).

    Returns per policy the mean imagined return and success rate (the task's test at the last step,
    judged by the first of SUCCESS_SOURCES that can; None where none can), each with a 95 %
    bootstrap interval over the M episodes, and the (P, M) returns."""
    p, m = len(names), len(starts)
    if len(policies) != p:
        raise ValueError(f"give one policy (a factory of fresh copies) per name: {p} names, {len(policies)} policies.")
    if m < 1 or steps < 1:
        raise ValueError(f"need at least one start and one step, got {m} starts and {steps} steps.")
    generator = torch.Generator().manual_seed(seed)
    returns = np.zeros(p * m)
    judged: dict[str, np.ndarray] = {}
    rows_all = list(range(p * m))
    batches = [rows_all[i : i + batch_size] for i in range(0, p * m, batch_size)]
    for b in progress(range(len(batches))):
        rows = batches[b]
        starts_of = [r % m for r in rows]
        goals_of = None if goals is None else goals[starts_of]
        out = fresh_closed_loop(
            world_model,
            [policies[r // m] for r in rows],
            [seed + j for j in starts_of],
            starts[starts_of],
            steps,
            generator=generator,
            observer=observer,
            goals=goals_of,
        )
        returns[rows] = out.rewards.sum(1)
        for name, verdict in judge_success(out, observer, goals_of, success_from_reward).items():
            judged.setdefault(name, np.full(p * m, np.nan))[rows] = verdict
    source = next((s for s in SUCCESS_SOURCES if s in judged), None)
    success = np.full(p * m, np.nan) if source is None else judged[source]
    returns, success = returns.reshape(p, m), success.reshape(p, m)
    rng = np.random.default_rng(seed)
    return_ci = bootstrap_interval(returns, rng)
    success_ci = None if source is None else bootstrap_interval(success, rng)
    per_policy = {
        name: {
            "imagined_return": float(returns[i].mean()),
            "imagined_return_ci": return_ci[i].tolist(),
            "imagined_success": None if source is None else float(success[i].mean()),
            "imagined_success_ci": None if source is None else success_ci[i].tolist(),
        }
        for i, name in enumerate(names)
    }
    return {"policies": per_policy, "starts": m, "steps": steps, "success_source": source, "imagined_returns": returns.tolist()}
