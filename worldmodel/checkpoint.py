"""The exported checkpoint: one self-contained file of plain types and tensors.

It loads with `torch.load(weights_only=True)`: data, never code, so a downloaded `model.pt`
cannot run anything. Keys:

    format, format_version          "diffusionworld-checkpoint", 2
    spec                            `ModelSpec.to_dict()`: networks, window, EDM, sampler, action space,
                                    frame shape, the recorded task preset, the validation split
    denoiser, reward_head           EMA weights (state dicts)
    reward_stats                    {"mean", "std", "min", "max"} of the training rewards
    start_bank                      {"frames": (N, K, H, W, 3) uint8, "actions": (N, K-1, A) float32,
                                     with a state track also "states": (N, K, nq+nv) float32}
    dynamics                        the state track's weights (a spec with `dynamics` only)
    codec                           a latent model's frame codec weights (a spec with `codec` only)
    provenance                      {"dataset": {...fingerprint, "train_episodes": [one hash per trained
                                     episode]}, "code_version", "steps", "created"}
    training_config                 the fully resolved training config, for the record: no consumer reads it

`load_checkpoint` returns the payload with `spec` as a `ModelSpec`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.spec import ModelSpec, SpecError

CHECKPOINT_FORMAT = "diffusionworld-checkpoint"
CHECKPOINT_VERSION = 2
REQUIRED = ("spec", "denoiser", "reward_head", "reward_stats", "start_bank", "provenance")
REEXPORT = (
    "Re-export it with this code: python tools/train.py data=... run_dir=RUN resume=true (with the run's own config; "
    "the weights are kept), or retrain."
)


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


def save_checkpoint(path: str | os.PathLike, spec: ModelSpec, payload: dict[str, Any]) -> Path:
    """Writes `spec` and the rest of the payload (the keys above) atomically (temporary file + rename):
    a crash never leaves a half-written model.pt."""
    payload = _plain({"spec": spec.to_dict(), **payload})
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}.")
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
            f"No checkpoint at {path}. The project ships a reacher model: pretrained/reacher.pt (in the repository root); "
            "train your own with: python tools/train.py data=data/reacher_mix.h5 run_dir=runs/reacher"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors for foreign files
        with open(path, "rb") as f:
            hdf5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
        # torch's own message advises weights_only=False, which would run the file's code: never shown
        what = (
            "an HDF5 file (rollout data goes in data=..., a model in checkpoint=...)"
            if hdf5
            else f"unreadable as one ({type(error).__name__})"
        )
        raise CheckpointError(f"{path} is not a DiffusionWorld checkpoint: {what}. Files that hold code are refused.") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a DiffusionWorld checkpoint (no '{CHECKPOINT_FORMAT}' marker).")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format_version {payload.get('format_version')}; this code reads {CHECKPOINT_VERSION}. {REEXPORT}"
        )
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; it is damaged or was written by another tool.")
    try:
        payload["spec"] = ModelSpec.from_dict(payload["spec"])
    except (SpecError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: {error}") from error
    _check_contents(path, payload)
    return payload


def _check_contents(path: Path, payload: dict[str, Any]) -> None:
    """Finite weights and a usable start bank: a damaged file fails here, not as black frames or
    NaN rewards later."""
    if payload["spec"].has_state and not isinstance(payload.get("dynamics"), dict):
        raise CheckpointError(f"{path}: its spec has a state track but the file holds no 'dynamics' weights; it is damaged. {REEXPORT}")
    for part in ("denoiser", "reward_head", "dynamics"):
        if part not in payload:
            continue
        bad = [
            k
            for k, v in payload[part].items()
            if not isinstance(v, torch.Tensor) or (v.is_floating_point() and not torch.isfinite(v).all())
        ]
        if bad:
            raise CheckpointError(
                f"{path}: {part} weights {bad[:3]} are not finite tensors; the file is damaged, or the run diverged. {REEXPORT}"
            )
    bank, spec = payload["start_bank"], payload["spec"]
    frames, actions = (bank.get(k) if isinstance(bank, dict) else None for k in ("frames", "actions"))
    k = spec.context
    if (
        not isinstance(frames, torch.Tensor)
        or frames.dtype != torch.uint8
        or frames.ndim != 5
        or len(frames) == 0
        or tuple(frames.shape[1:]) != (k, *spec.frame_shape)
        or not isinstance(actions, torch.Tensor)
        or tuple(actions.shape[:2]) != (len(frames), k - 1)
    ):
        shapes = {
            name: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            for name, v in (("frames", frames), ("actions", actions))
        }
        raise CheckpointError(
            f"{path}: its start bank {shapes} is not N >= 1 real start contexts (frames (N, {k}, {', '.join(map(str, spec.frame_shape))}) "
            f"uint8, actions (N, {k - 1}, A)). {REEXPORT}"
        )
    states = bank.get("states")
    if spec.has_state:
        width = spec.dynamics["nq"] + spec.dynamics["nv"]
        if not isinstance(states, torch.Tensor) or tuple(states.shape) != (len(frames), k, width) or not torch.isfinite(states).all():
            raise CheckpointError(f"{path}: its start bank lacks the states of its contexts ((N, {k}, {width}) finite float). {REEXPORT}")
