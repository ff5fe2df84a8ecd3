"""A zoo of learned policies for a task: Stable-Baselines3 agents trained on the real MuJoCo task,
saved at several training budgets, so policy evaluation is tested on graded learned policies and
not only on noise-graded experts.

A state policy trains on the source gymnasium env (its own observation vector, no rendering); a
pixel policy on `PixelTaskEnv`, the frames the world model sees (SB3's CnnPolicy, channels moved
first by SB3 itself). Each snapshot is scored on real episodes, and the zoo's index
(`policies.yaml`) lists them as `tools/evaluate.py` entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import OmegaConf

from envs.mujoco.recording import record_episode
from envs.mujoco.tasks import TaskPreset, make_task_env
from worldmodel.policy import SB3Policy

INDEX = "policies.yaml"


@dataclass(frozen=True)
class ZooMember:
    """One snapshot: SB3 `algo`, what it `observes`, its training `steps` (env steps), where it is."""

    algo: str
    observes: str
    steps: int
    path: Path

    @property
    def reference(self) -> str:
        return f"sb3:{self.algo}:{self.path}"

    @property
    def label(self) -> str:
        steps = f"{self.steps // 1000}k" if self.steps % 1000 == 0 else str(self.steps)
        return f"{self.algo.lower()}_{self.observes}_{steps}"


def training_env(preset: TaskPreset, observes: str) -> gym.Env:
    """The task as an SB3 agent trains on it: the source env (state) or the pixel env (pixels)."""
    if observes == "pixels":
        return make_task_env(preset)
    if observes != "state":
        raise ValueError(f"observes must be 'state' or 'pixels', got {observes!r}.")
    if preset.action_repeat != 1:
        raise ValueError(
            f"task {preset.name!r} repeats actions {preset.action_repeat}x; state policies train on the source env, "
            "which does not: train pixel policies, or use action_repeat=1."
        )
    env = gym.make(preset.env_id, max_episode_steps=preset.episode_steps, **preset.env_kwargs)
    if isinstance(env.observation_space, gym.spaces.Dict):  # goal-based envs: the flat vector PixelTaskEnv gives as info["state"]
        env = gym.wrappers.FlattenObservation(env)
    return env


def train_snapshots(
    preset: TaskPreset,
    observes: str,
    budgets: Sequence[int],
    out: str | Path,
    algo: str = "PPO",
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
    progress: Callable[[Iterable[int]], Iterable[int]] = iter,
    env: Any = None,
) -> list[ZooMember]:
    """Trains one agent and saves it after each of `budgets` env steps (cumulative, ascending) as
    out/<algo>_<observes>_<steps>.zip. env: what it trains on (a gymnasium env or an SB3 VecEnv,
    e.g. `envs.sb3.imagined_vec_env`: imagination); default the real task (`training_env`)."""
    import stable_baselines3

    budgets = sorted(int(b) for b in budgets)
    if not budgets or budgets[0] < 1:
        raise ValueError(f"budgets must be positive env-step counts, got {list(budgets)}.")
    algorithm = getattr(stable_baselines3, algo.upper())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = training_env(preset, observes) if env is None else env
    model = algorithm(
        "CnnPolicy" if observes == "pixels" else "MlpPolicy", env, seed=seed, device="cpu", verbose=0, **(hyperparameters or {})
    )
    members = []
    for budget in progress(budgets):
        model.learn(budget - model.num_timesteps, reset_num_timesteps=False)
        member = ZooMember(algo.upper(), observes, budget, out / f"{algo.lower()}_{observes}_{budget}.zip")
        model.save(member.path)
        members.append(member)
    env.close()
    return members


def score_members(preset: TaskPreset, members: Sequence[ZooMember], episodes: int, seed: int = 1000) -> list[dict[str, float]]:
    """Mean real return and success rate of each snapshot over `episodes` MuJoCo episodes."""
    env = make_task_env(preset)
    scores = []
    for member in members:
        policy = SB3Policy(member.algo, member.path)
        runs = [record_episode(env, policy, seed + j) for j in range(episodes)]
        scores.append(
            {"real_return": float(np.mean([e.rewards.sum() for e in runs])), "real_success": float(np.mean([e.success[-1] for e in runs]))}
        )
    env.close()
    return scores


def write_index(out: str | Path, members: Sequence[ZooMember], scores: Sequence[dict[str, float]], task: str) -> Path:
    """out/policies.yaml: the snapshots as `tools/evaluate.py` policy entries, with their real scores."""
    entries = [{"name": m.reference, "label": m.label, "observes": m.observes, "steps": m.steps, **s} for m, s in zip(members, scores)]
    path = Path(out) / INDEX
    OmegaConf.save({"task": task, "policies": entries}, path)
    return path


def read_index(zoo: str | Path) -> list[dict[str, str]]:
    """The policy entries ({name, label}) of a zoo directory written by `write_index`."""
    path = Path(zoo) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: make a zoo with python tools/train_policies.py task=... out={zoo}.")
    return [{"name": e.name, "label": e.label} for e in OmegaConf.load(path).policies]
