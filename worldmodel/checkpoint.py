"""The exported checkpoint: one self-contained file of plain types and tensors.

It loads with `torch.load(weights_only=True)`: data, never code, so a downloaded `model.pt`
cannot run anything. Keys:

    format, format_version          "diffusionworld-checkpoint", 1
    config                          the fully resolved training config (plain dict)
    denoiser, reward_head           EMA weights (state dicts)
    frame_shape                     [H, W, 3]
    action_space                    {"type": "box", "low": [...], "high": [...], "shape": [...]}
    task                            the task name of the training data
    reward_stats                    {"mean", "std", "min", "max"} of the training rewards
    start_bank                      {"frames": (N, K, H, W, 3) uint8, "actions": (N, K-1, A) float32}
    provenance                      {"dataset": {...fingerprint}, "code_version", "steps", "created"}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "diffusionworld-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED = ("config", "denoiser", "reward_head", "frame_shape", "action_space", "task", "start_bank", "provenance")


class CheckpointError(ValueError):
    """A file that is not a loadable DiffusionWorld checkpoint; the message says why and what to do."""


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python numbers/tensors, recursively: what weights_only loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Writes atomically (temporary file + rename): a crash never leaves a half-written model.pt."""
    payload = _plain(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No checkpoint at {path}. Train one with: python tools/train.py data=data/reacher.h5 run_dir=runs/reacher"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors for foreign files
        raise CheckpointError(
            f"{path} is not a DiffusionWorld checkpoint (or holds code, which is refused): {type(error).__name__}: {error}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a DiffusionWorld checkpoint (no '{CHECKPOINT_FORMAT}' marker).")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format_version {payload.get('format_version')}; this code reads {CHECKPOINT_VERSION}."
        )
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; it is damaged or was written by another tool.")
    return payload
