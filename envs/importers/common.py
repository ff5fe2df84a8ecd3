"""What every importer shares: resizing frames to the model's size, the metadata of an imported
file, and writing the episodes with validation."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

import worldmodel
from worldmodel.data import Episode, RolloutWriter
from worldmodel.data.format import RolloutFormatError


@dataclass
class ImportedData:
    """An importer's output: the file's metadata (what `RolloutWriter` needs) and its episodes,
    produced lazily so a large dataset is converted one episode at a time."""

    metadata: dict[str, Any]
    episodes: Iterator[Episode]
    count: int  # episodes the source holds


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """frames: (N, H, W, 3) uint8 (or float in [0, 1]) -> (N, *size, 3) uint8: area-averaged when
    shrinking (no aliasing of thin parts), bilinear when enlarging."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise RolloutFormatError(f"image observations must be (N, H, W, 3) RGB, got {frames.shape}.")
    if frames.dtype != np.uint8:
        if frames.max(initial=0) > 1.0 + 1e-6 or frames.min(initial=0) < 0:
            raise RolloutFormatError(f"float images must lie in [0, 1], got [{frames.min():.3g}, {frames.max():.3g}].")
        frames = np.round(frames * 255).astype(np.uint8)
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    x = rearrange(torch.from_numpy(frames).float(), "n h w c -> n c h w")
    if size[0] <= frames.shape[1] and size[1] <= frames.shape[2]:
        x = F.interpolate(x, size=tuple(size), mode="area")
    else:
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return rearrange(x.round().clamp(0, 255).to(torch.uint8), "n c h w -> n h w c").numpy()


def imported_metadata(
    task: str,
    frame_size: tuple[int, int],
    actions: np.ndarray,
    nq: int,
    nv: int,
    source: dict[str, Any],
    task_preset: dict[str, Any] | None = None,
    action_low=None,
    action_high=None,
) -> dict[str, Any]:
    """The metadata of an imported file. actions: (N, A) a sample of the data's actions, whose
    range bounds the action space where the source gives none (action_low / action_high)."""
    low = np.asarray(actions.min(0) if action_low is None else action_low, np.float32).reshape(-1)
    high = np.asarray(actions.max(0) if action_high is None else action_high, np.float32).reshape(-1)
    metadata = {
        "task": task,
        "frame_shape": [*frame_size, 3],
        "action_shape": [int(actions.shape[-1])],
        "action_low": low.tolist(),
        "action_high": np.maximum(high, low + 1e-6).tolist(),
        "nq": int(nq),
        "nv": int(nv),
        "policies": [{"name": "imported"}],
        "source": source,
        "versions": {
            "worldmodel": worldmodel.__version__,
            "gymnasium": gymnasium.__version__,
            "h5py": h5py.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    if task_preset is not None:
        metadata |= {"task_preset": task_preset, "env_id": task_preset["env_id"]}
    return metadata


def write_imported(
    data: ImportedData, out: str | os.PathLike, append: bool = False, progress: Callable[[Iterable[Episode]], Iterable[Episode]] = iter
) -> int:
    """Writes the episodes to `out` (each checked by the writer, and on disk once written); returns
    how many. A file appended to must hold the same task, frame shape and action space."""
    n = 0
    with RolloutWriter(out, data.metadata, append=append) as writer:
        for episode in progress(data.episodes):
            writer.add_episode(episode)
            n += 1
    if n == 0:
        raise RolloutFormatError("the source holds no episode with at least one step.")
    return n
