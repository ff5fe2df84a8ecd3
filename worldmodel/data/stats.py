"""What a model needs to know of its training data: fingerprint, action space, task, reward
statistics and a bank of real start contexts. Reads files with `RolloutReader` only."""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import numpy as np
import torch

from worldmodel.data.reader import RolloutReader, listed_ends
from worldmodel.states import state_features


def dataset_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Identifies a rollout file without hashing gigabytes: size, episode index and metadata."""
    with RolloutReader(path) as reader:
        h = hashlib.sha256()
        for arr in (reader.frame_start, reader.lengths, reader.seeds):
            h.update(arr.tobytes())
        h.update(json.dumps(reader.metadata, sort_keys=True).encode())
        return {"path": str(path), "episodes": reader.num_episodes, "frames": reader.num_frames, "sha256": h.hexdigest()}


FINGERPRINT_ACTIONS = 8


def episode_fingerprints(path: str | os.PathLike, episodes=None) -> list[str]:
    """One short hash per episode of its first frame and first FINGERPRINT_ACTIONS actions: the same
    episode recorded again (same seed, any file) gets the same fingerprint, so a checkpoint that keeps
    its training episodes' fingerprints recognises them in any file. episodes: indices (all if None)."""
    with RolloutReader(path) as reader:
        out = []
        for e in range(reader.num_episodes) if episodes is None else episodes:
            h = hashlib.sha1(np.ascontiguousarray(reader.frames(int(e), 0, 1)).tobytes())
            h.update(np.asarray(reader.steps("actions", int(e), 0, FINGERPRINT_ACTIONS), np.float32).tobytes())
            out.append(h.hexdigest()[:16])
        return out


def action_space_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """The file's action space in plain types: {"type": "box", "low", "high", "shape"}."""
    return {"type": "box", "low": metadata["action_low"], "high": metadata["action_high"], "shape": metadata["action_shape"]}


def task_of(path: str | os.PathLike) -> dict[str, Any]:
    """The task preset the file was recorded with (`TaskPreset.describe()`); for data recorded
    elsewhere, without one, the task's name and the longest episode's length."""
    with RolloutReader(path) as reader:
        preset = reader.metadata.get("task_preset")
        if preset is not None:
            return preset
        return {"name": reader.metadata["task"], "episode_steps": int(reader.lengths.max(initial=1)), "action_repeat": 1}


def _mean_std(total, total_sq, count: int):
    """Mean and std (at least 1e-3) from running sums of values and their squares, elementwise."""
    mean = total / max(count, 1)
    return mean, np.maximum(np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0)), 1e-3)


def reward_stats(path: str | os.PathLike) -> dict[str, float]:
    """Mean, std (at least 1e-3), min and max of every recorded reward, in bounded memory."""
    with RolloutReader(path) as reader:
        _, n = listed_ends(reader.file["episodes"])
        total, total_sq, lo, hi, count = 0.0, 0.0, math.inf, -math.inf, 0
        for start in range(0, n, 1 << 16):
            r = reader.file["rewards"][start : min(n, start + (1 << 16))].astype(np.float64)
            total, total_sq, count = total + r.sum(), total_sq + (r**2).sum(), count + len(r)
            lo, hi = min(lo, float(r.min())), max(hi, float(r.max()))
    mean, std = _mean_std(total, total_sq, count)
    return {"mean": float(mean), "std": float(std), "min": lo, "max": hi}


def state_stats(path: str | os.PathLike) -> dict[str, list[float]]:
    """Mean and std (at least 1e-3) of `state_features` over every frame, the std (at least 1e-3)
    of one step's change of the raw state [qpos, qvel] within episodes, and the range of qpos
    ("qpos_min", "qpos_max"), in bounded memory."""
    with RolloutReader(path) as reader:
        total, total_sq, count = 0.0, 0.0, 0
        low, high = np.inf, -np.inf
        d_total, d_total_sq, d_count = 0.0, 0.0, 0
        for e in range(reader.num_episodes):
            qpos, qvel = (torch.from_numpy(reader.frames(e, name=k).astype(np.float64)) for k in ("qpos", "qvel"))
            s = state_features(qpos, qvel).numpy()
            low, high = np.minimum(low, qpos.numpy().min(0)), np.maximum(high, qpos.numpy().max(0))
            total, total_sq, count = total + s.sum(0), total_sq + (s**2).sum(0), count + len(s)
            d = np.diff(torch.cat([qpos, qvel], -1).numpy(), axis=0)
            d_total, d_total_sq, d_count = d_total + d.sum(0), d_total_sq + (d**2).sum(0), d_count + len(d)
    mean, std = _mean_std(total, total_sq, count)
    return {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "delta_std": _mean_std(d_total, d_total_sq, d_count)[1].tolist(),
        "qpos_min": np.atleast_1d(low).tolist(),
        "qpos_max": np.atleast_1d(high).tolist(),
    }


def start_bank(dataset, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Real start contexts for env resets: the first K frames and K-1 actions of `size` distinct
    windows of `dataset` (a `RolloutWindows`), spread over its episodes: every episode gives one
    window before any gives a second (windows of one episode are alike; a still arm makes them
    identical). frames: (N, K, H, W, 3) uint8; actions: (N, K-1, A); for a dataset read with its
    states, states: (N, K, nq+nv) float32 [qpos, qvel]; for a file of a goal-based task, goals: (N, G)
    float64, each context's episode goal."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    episodes = dataset.index[order, 0]
    rank, count = np.empty(len(order), np.int64), {}  # rank: how many windows of its episode come before it
    for i, e in enumerate(episodes.tolist()):
        rank[i] = count.get(e, 0)
        count[e] = rank[i] + 1
    picks = order[np.argsort(rank, kind="stable")][:size]
    k = dataset.context
    items = [dataset[int(i)] for i in picks]
    bank = {
        "frames": torch.stack([it["frames"][:k] for it in items]).contiguous(),
        "actions": torch.stack([it["actions"][: k - 1] for it in items]).contiguous(),
    }
    if dataset.states:
        bank["states"] = torch.stack([torch.cat([it["qpos"][:k], it["qvel"][:k]], -1) for it in items]).contiguous()
    with RolloutReader(dataset.path) as reader:
        if reader.goals is not None:  # a goal-based task: each context's episode goal, for its state observation
            bank["goals"] = torch.from_numpy(reader.goals[dataset.index[picks, 0]]).contiguous()
    return bank
