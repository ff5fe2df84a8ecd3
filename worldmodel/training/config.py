"""The training config, typed: what configs/train.yaml and its groups hold.

The YAML files hold every value and say why it was chosen; these classes say what each is, and
`training_config` checks a composed config against them (OmegaConf's structured configs): a
missing key, an unknown one or a value of the wrong type is refused by name before anything is
trained. The trainer, its stages and the exporter read attributes, never string keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from worldmodel.diffusion import SamplerConfig

# Optional groups: `dynamics=none` and `codec=none` select an empty file; the stage is then off.
OPTIONAL_GROUPS = ("dynamics", "codec")


@dataclass
class DiffusionConfig:
    """EDM preconditioning and training noise (configs/diffusion/)."""

    sigma_data: float = MISSING
    loc: float = MISSING
    scale: float = MISSING
    sigma_min: float = MISSING
    sigma_max: float = MISSING
    max_context_sigma: float = MISSING  # context frames get sigma ~ U(0, max) in training


@dataclass
class DynamicsConfig:
    """The state track and its own training stage (configs/dynamics/)."""

    hidden: int = MISSING
    layers: int = MISSING
    steps: Any = MISSING  # "auto" or a number of optimiser steps (`dynamics.state_track_steps`)
    batch_size: int = MISSING
    horizon: int = MISSING
    lr: float = MISSING
    joint_limits: bool = MISSING


@dataclass
class CodecConfig:
    """A latent model's frame codec and its own training stage (configs/codec/)."""

    latent_channels: int = MISSING
    channels: list[int] = MISSING
    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING


@dataclass
class PoseConfig:
    maps: bool = MISSING
    sigma: float = MISSING  # pixels
    bodies: list[str] | None = None  # None: the task's pose_bodies, else every body of its model


@dataclass
class OptimConfig:
    lr: float = MISSING
    weight_decay: float = MISSING
    betas: list[float] = MISSING
    warmup_steps: int = MISSING
    min_lr_ratio: float = MISSING
    grad_clip: float = MISSING


@dataclass
class WindowConfig:
    context: int = MISSING
    target: int = MISSING
    stride: int = MISSING
    val_fraction: float = MISSING
    split_seed: int = MISSING
    cache: bool = MISSING
    num_workers: int = MISSING


@dataclass
class RolloutConfig:
    max_unroll: int = MISSING
    curriculum_steps: int = MISSING
    sampler_steps: int = MISSING


@dataclass
class TrainConfig:
    """A training run (configs/train.yaml). `model` is the denoiser's own arguments, which each
    architecture defines (`models.registry`); `expect` what the data must hold (task, frame and
    action shapes; tools/train.py fills it from `task=`)."""

    data: str = MISSING
    run_dir: str = MISSING
    model: dict[str, Any] = MISSING
    diffusion: DiffusionConfig = MISSING
    sampler: Any = MISSING  # a SamplerConfig (frozen, so built after the check)
    dynamics: DynamicsConfig | None = None
    codec: CodecConfig | None = None
    pose: PoseConfig = MISSING
    optim: OptimConfig = MISSING
    window: WindowConfig = MISSING
    rollout: RolloutConfig = MISSING
    expect: dict[str, Any] = field(default_factory=dict)
    resume: bool = MISSING
    seed: int = MISSING
    device: str = MISSING
    steps: int = MISSING
    batch_size: int = MISSING
    gradient_accumulation_steps: int = MISSING
    mixed_precision: str = MISSING
    compile: Any = MISSING  # true | false | "auto"
    ema_decay: float = MISSING
    reward_weight: float = MISSING
    termination_weight: float = MISSING
    success_weight: float = MISSING
    log_every: int = MISSING
    save_every: int = MISSING
    val_every: int = MISSING
    val_horizons: list[int] = MISSING
    val_episodes: int = MISSING
    start_bank_size: int = MISSING
    export_dtype: str = MISSING
    tensorboard: bool = MISSING

    def plain(self) -> dict[str, Any]:
        """As plain data (config.json, the checkpoint's training_config); off stages are {} as in the YAML."""
        out = dataclasses.asdict(self)
        return out | {group: out[group] or {} for group in OPTIONAL_GROUPS}


def training_config(cfg: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    """A composed training config (a plain mapping, as tools/train.py resolves hydra's) checked
    against `TrainConfig`; raises ValueError naming a missing, unknown or mistyped key."""
    if isinstance(cfg, TrainConfig):
        return cfg
    plain = {k: v for k, v in dict(cfg).items() if k != "hydra"}
    for group in OPTIONAL_GROUPS:
        plain[group] = plain.get(group) or None
    try:
        typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), plain))
    except OmegaConfBaseException as error:
        where = getattr(error, "full_key", None) or "?"
        raise ValueError(
            f"training config, {where}: {getattr(error, 'msg', error)}. The keys and what they mean: configs/train.yaml."
        ) from error
    typed.sampler = SamplerConfig(**typed.sampler)
    return typed
