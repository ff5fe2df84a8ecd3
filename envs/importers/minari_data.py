"""Minari datasets (made with Minari's own `DataCollector`) into the rollout format.

Frames come from one of two places:
- `frames="render"`: each episode is replayed in the task's MuJoCo env from its recorded reset
  seed (Minari seeds every episode) under the recorded actions, and rendered with the task's
  camera; the replay's observations and rewards are checked against the recorded ones at every
  step, so the frames, qpos and qvel are exactly the recorded episode's. Needs a task preset of
  the dataset's env (`task=`, or the built-in one with that env id).
- `frames=<key>`: image observations already in the dataset (a Dict observation's key, or
  `observation` when the observation itself is an image), resized to `frame_size`; qpos/qvel come
  from the episode infos where the collector stored them, else the file holds no state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from envs.importers.common import ImportedData, imported_metadata, resize_frames
from envs.mujoco.tasks import TASKS, TaskPreset, get_task, make_task_env
from worldmodel.data import Episode
from worldmodel.data.format import RolloutFormatError

# Replayed observations may differ from recorded ones by float noise only.
REPLAY_TOLERANCE = 1e-5


def load_minari(dataset_id: str):
    try:
        import minari
    except ImportError as error:
        raise ImportError("importing Minari datasets needs minari: pip install 'minari>=0.5'.") from error
    try:
        return minari.load_dataset(dataset_id)
    except (FileNotFoundError, ValueError) as error:
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} not found locally ({error}); datasets live in $MINARI_DATASETS_PATH "
            "(default ~/.minari/datasets), see `minari list local`."
        ) from error


def import_minari(
    dataset_id: str, frames: str = "render", task: str | dict[str, Any] | None = None, frame_size: tuple[int, int] = (64, 64)
) -> ImportedData:
    """The episodes of a local Minari dataset as rollout-format episodes (see the module doc)."""
    dataset = load_minari(dataset_id)
    spec = dataset.spec.env_spec
    episodes = list(dataset.episode_indices)
    seeds = [m.get("seed") for m in dataset.storage.get_episode_metadata(episodes)]
    first = next(dataset.iterate_episodes(episodes[:1]))
    source = {"minari": dataset_id, "env_id": None if spec is None else spec.id}
    if frames == "render":
        preset = _render_preset(task, spec, frame_size)
        env = make_task_env(preset)
        model = env.unwrapped.model
        metadata = imported_metadata(
            preset.name,
            preset.frame_size,
            np.asarray(first.actions),
            model.nq,
            model.nv,
            source,
            preset.describe(),
            env.action_space.low,
            env.action_space.high,
        )
        return ImportedData(metadata, _replayed(dataset, episodes, seeds, env), len(episodes))
    _images(first.observations, frames)  # a wrong key fails here, before any file is made
    qpos, qvel = _infos_state(first.infos)
    task_name = task if isinstance(task, str) else dataset_id.replace("/", "_")
    space = dataset.spec.action_space  # the bounds the data was collected under, not one episode's range
    metadata = imported_metadata(
        task_name,
        frame_size,
        np.asarray(first.actions),
        qpos.shape[-1],
        qvel.shape[-1],
        source | {"frames": frames},
        action_low=getattr(space, "low", None),
        action_high=getattr(space, "high", None),
    )
    return ImportedData(metadata, _from_images(dataset, episodes, seeds, frames, frame_size), len(episodes))


def _render_preset(task: str | dict[str, Any] | None, spec, frame_size) -> TaskPreset:
    """The task to replay and render with; spec: the dataset's gymnasium EnvSpec (or None)."""
    env_id = None if spec is None else spec.id
    if task is None:
        known = [name for name, preset in TASKS.items() if preset.env_id == env_id]
        if not known:
            raise ValueError(
                f"frames=render needs the task to render with (camera, frame size): the dataset's env {env_id!r} has no "
                "built-in preset; pass task=<name> with a config in configs/task/, or frames=<image observation key>."
            )
        task = known[0]
    # The recording's episode length, where its env spec says (the replay must not truncate before it did).
    preset = get_task(task, frame_size=tuple(frame_size), episode_steps=None if spec is None else spec.max_episode_steps)
    if env_id is not None and preset.env_id != env_id:
        raise ValueError(f"task {preset.name!r} runs {preset.env_id}, but the dataset was recorded on {env_id}: give the task of that env.")
    if preset.action_repeat != 1:
        raise ValueError(
            f"task {preset.name!r} repeats actions {preset.action_repeat}x; a recorded step is one env step: use action_repeat=1."
        )
    return preset


def _replayed(dataset, episodes, seeds, env) -> Iterator[Episode]:
    try:
        for index, seed, data in zip(episodes, seeds, dataset.iterate_episodes(episodes)):
            if seed is None:
                raise RolloutFormatError(
                    f"episode {index} has no recorded reset seed, so it cannot be replayed to render it; import its "
                    "image observations with frames=<key> instead."
                )
            yield _replay(env, int(index), int(seed), data)
    finally:
        env.close()


def _replay(env, index: int, seed: int, data) -> Episode:
    recorded = np.asarray(data.observations)
    frame, info = env.reset(seed=seed)
    _check(index, 0, info["state"], recorded[0])
    frames, qpos, qvel, success = [frame], [info["qpos"]], [info["qvel"]], []
    for t, action in enumerate(np.asarray(data.actions, np.float32)):
        frame, reward, _, _, info = env.step(action)
        _check(index, t + 1, info["state"], recorded[t + 1])
        if abs(reward - float(data.rewards[t])) > REPLAY_TOLERANCE * max(1.0, abs(reward)):
            raise RolloutFormatError(
                f"episode {index}, step {t}: the replay's reward {reward:.6g} is not the recorded "
                f"{float(data.rewards[t]):.6g}: the task's env is not the one the data was recorded with."
            )
        frames.append(frame)
        qpos.append(info["qpos"])
        qvel.append(info["qvel"])
        success.append(info["success"])
    return Episode(
        frames=np.stack(frames),
        actions=np.asarray(data.actions, np.float32),
        rewards=np.asarray(data.rewards, np.float32),
        terminated=np.asarray(data.terminations, bool),
        truncated=np.asarray(data.truncations, bool),
        success=np.asarray(success, bool),
        qpos=np.stack(qpos),
        qvel=np.stack(qvel),
        seed=seed,
        policy={"name": "minari"},
    )


def _check(index: int, step: int, replayed: np.ndarray, recorded: np.ndarray) -> None:
    gap = float(np.abs(np.asarray(replayed, float) - np.asarray(recorded, float)).max(initial=0))
    if gap > REPLAY_TOLERANCE * max(1.0, float(np.abs(recorded).max(initial=0))):
        raise RolloutFormatError(
            f"episode {index} diverges from its recording at step {step} (max |observation difference| {gap:.3g}): "
            "the task's env (env_id, env_kwargs, versions) is not the one the data was recorded with."
        )


def _images(observations: Any, key: str) -> np.ndarray:
    if isinstance(observations, dict):
        if key not in observations:
            raise ValueError(f"frames={key!r}: the observations have keys {sorted(observations)}; name the image one, or frames=render.")
        return np.asarray(observations[key])
    if key != "observation":
        raise ValueError(
            f"frames={key!r}: the observations are one array, not a dict: use frames=observation (if they are images) or frames=render."
        )
    return np.asarray(observations)


def _infos_state(infos: dict) -> tuple[np.ndarray, np.ndarray]:
    """qpos, qvel (T+1, n) from the episode infos where the collector stored them, else width 0."""
    if "qpos" in infos and "qvel" in infos:
        return np.asarray(infos["qpos"], np.float64), np.asarray(infos["qvel"], np.float64)
    return np.zeros((0, 0)), np.zeros((0, 0))


def _from_images(dataset, episodes, seeds, key: str, frame_size) -> Iterator[Episode]:
    for index, seed, data in zip(episodes, seeds, dataset.iterate_episodes(episodes)):
        images = resize_frames(_images(data.observations, key), frame_size)
        steps = len(data.rewards)
        qpos, qvel = _infos_state(data.infos)
        if len(qpos) == 0:
            qpos, qvel = np.zeros((steps + 1, 0)), np.zeros((steps + 1, 0))
        success = np.asarray(data.infos["success"][1:], bool) if "success" in data.infos else np.zeros(steps, bool)
        yield Episode(
            frames=images,
            actions=np.asarray(data.actions, np.float32).reshape(steps, -1),
            rewards=np.asarray(data.rewards, np.float32),
            terminated=np.asarray(data.terminations, bool),
            truncated=np.asarray(data.truncations, bool),
            success=success,
            qpos=qpos,
            qvel=qvel,
            seed=int(seed if seed is not None else index),
            policy={"name": "minari"},
        )
