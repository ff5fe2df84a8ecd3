"""Recording policy rollouts of a task preset into an HDF5 rollout file."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import h5py
import mujoco
import numpy as np

import worldmodel
from envs.mujoco.policies import build_policy
from envs.mujoco.tasks import PixelTaskEnv, TaskPreset, make_task_env
from worldmodel.checks import whole_number
from worldmodel.data import Episode, RolloutWriter
from worldmodel.policy import Policy, describe_policy, policy_action

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicySpec:
    """One policy of a mixture or an evaluation: `name` (scripted, `module:attr` or
    `sb3:ALGO:path.zip`), noise `eps` (noisy_expert), mixture `weight`, and a `label` for tables."""

    name: str
    eps: float | None = None
    weight: float = 1.0
    label: str | None = None

    def build(self, env: PixelTaskEnv) -> Policy:
        return build_policy(self.name, env, self.eps)

    def __str__(self) -> str:
        return self.label or (self.name if self.eps is None else f"{self.name}(eps={self.eps})")


def record_episode(env: PixelTaskEnv, policy: Policy, seed: int) -> Episode:
    """Runs one episode from `env.reset(seed=seed)` until it terminates or truncates; the policy
    sees the frame or the source env's state vector, as it declares (`policy.observes`)."""
    rng = np.random.default_rng(seed)
    frame, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    policy.reset(rng)
    frames, qpos, qvel = [frame], [info["qpos"]], [info["qvel"]]
    actions, rewards, terminated, truncated, success = [], [], [], [], []
    done = False
    while not done:
        obs = frame if policy.observes == "pixels" else info["state"]
        action = policy_action(policy, obs, info, env.action_space.low, env.action_space.high)
        frame, reward, term, trunc, info = env.step(action)
        for store, value in (
            (frames, frame),
            (qpos, info["qpos"]),
            (qvel, info["qvel"]),
            (actions, action),
            (rewards, reward),
            (terminated, term),
            (truncated, trunc),
            (success, info["success"]),
        ):
            store.append(value)
        done = term or trunc
    return Episode(
        frames=np.stack(frames),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, np.float32),
        terminated=np.asarray(terminated, bool),
        truncated=np.asarray(truncated, bool),
        success=np.asarray(success, bool),
        qpos=np.stack(qpos),
        qvel=np.stack(qvel),
        seed=seed,
        policy=describe_policy(policy),
        goal=env.episode_goal(),
    )


def episode_plan(seed: int, first_episode: int, episodes: int, policies: Sequence[PolicySpec]) -> list[tuple[int, int]]:
    """(env seed, policy index) per episode: a pure function of `seed` and the episode's index in the file.

    Appending with the same seed therefore continues the sequence instead of repeating it.
    """
    weights = np.asarray([p.weight for p in policies], float)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"policy mixture weights must be >= 0 with a positive sum, got {weights.tolist()}.")
    plan = []
    for index in range(first_episode, first_episode + episodes):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        env_seed = int(rng.integers(2**31 - 1))
        plan.append((env_seed, int(rng.choice(len(policies), p=weights / weights.sum()))))
    return plan


def file_metadata(env: PixelTaskEnv, policies: Sequence[PolicySpec], seed: int) -> dict[str, Any]:
    """What a rollout file records about where its data came from."""
    preset = env.preset
    space = env.action_space
    return {
        "task": preset.name,
        "env_id": preset.env_id,
        "task_preset": preset.describe(),
        "frame_shape": [*preset.frame_size, 3],
        "action_shape": list(space.shape),
        "action_low": space.low.tolist(),
        "action_high": space.high.tolist(),
        "nq": int(env.unwrapped.model.nq),
        "nv": int(env.unwrapped.model.nv),
        **({"goal_shape": list(env.goal_shape)} if env.goal_shape else {}),
        "policies": [vars(p) for p in policies],
        "seed": seed,
        "versions": {
            "worldmodel": worldmodel.__version__,
            "gymnasium": gymnasium.__version__,
            "mujoco": mujoco.__version__,
            "h5py": h5py.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


# -- worker processes: one env per process, reused for every episode it records -------------
_worker: dict[str, Any] = {}


def _init_worker(preset: TaskPreset, policies: Sequence[PolicySpec]) -> None:
    _worker["env"] = make_task_env(preset)
    _worker["policies"] = [p.build(_worker["env"]) for p in policies]


def _record_planned(job: tuple[int, int]) -> Episode:
    env_seed, policy_index = job
    return record_episode(_worker["env"], _worker["policies"][policy_index], env_seed)


def record_rollouts(
    preset: TaskPreset,
    policies: Sequence[PolicySpec],
    episodes: int,
    out: str | os.PathLike,
    seed: int = 0,
    workers: int = 1,
    append: bool = False,
) -> Iterator[Episode]:
    """Records `episodes` episodes into `out`, yielding each one after it is safely on disk.

    Episodes are written in plan order whatever `workers` is, so the same seed gives the same
    file. Workers are separate processes (spawned: MuJoCo's GL context does not survive fork).
    """
    episodes, workers = whole_number(episodes, "episodes", 1), whole_number(workers, "workers", 1)
    seed = whole_number(seed, "seed", 0)
    env = make_task_env(preset)
    try:
        built = [p.build(env) for p in policies]  # unknown policy or bad eps: fail before creating any file
        with RolloutWriter(out, file_metadata(env, policies, seed), append=append) as writer:
            plan = episode_plan(seed, writer.num_episodes, episodes, policies)
            if workers == 1:
                results = (record_episode(env, built[i], s) for s, i in plan)
                for episode in results:
                    writer.add_episode(episode)
                    yield episode
            else:
                ctx = mp.get_context("spawn")
                with ctx.Pool(workers, initializer=_init_worker, initargs=(preset, list(policies))) as pool:
                    for episode in pool.imap(_record_planned, plan):
                        writer.add_episode(episode)
                        yield episode
    finally:
        env.close()
