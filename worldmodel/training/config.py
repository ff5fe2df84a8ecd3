"""The training config, typed: what configs/train.yaml and its groups hold.

The YAML files hold every value and say why it was chosen; these classes say what each is (no
defaults here: a field without one is a value the YAML must give), and
`training_config` checks a composed config against them (OmegaConf's structured configs): a
missing key, an unknown one or a value of the wrong type is refused by name before anything is
trained. The trainer, its stages and the exporter read attributes, never string keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from worldmodel.diffusion import SamplerConfig

# Optional groups: `dynamics=none` and `codec=none` select an empty file; the stage is then off.
OPTIONAL_GROUPS = ("dynamics", "codec")


@dataclass
class DiffusionConfig:
    """EDM preconditioning and training noise (configs/diffusion/)."""

    sigma_data: float
    loc: float
    scale: float
    sigma_min: float
    sigma_max: float
    max_context_sigma: float  # context frames get sigma ~ U(0, max) in training


@dataclass
class DynamicsConfig:
    """The state track and its own training stage (configs/dynamics/)."""

    hidden: int
    layers: int
    steps: Any  # "auto" or a number of optimiser steps (`dynamics.state_track_steps`)
    batch_size: int
    horizon: int
    lr: float
    joint_limits: bool


@dataclass
class CodecConfig:
    """A latent model's frame codec and its own training stage (configs/codec/)."""

    latent_channels: int
    channels: list[int]
    steps: int
    batch_size: int
    lr: float


@dataclass
class PoseConfig:
    maps: bool
    sigma: float  # pixels
    bodies: list[str] | None = None  # None: the task's pose_bodies, else every body of its model


@dataclass
class OptimConfig:
    lr: float
    weight_decay: float
    betas: list[float]
    warmup_steps: int
    min_lr_ratio: float
    grad_clip: float


@dataclass
class WindowConfig:
    context: int
    target: int
    stride: int
    val_fraction: float
    split_seed: int
    cache: bool
    num_workers: int


@dataclass
class RolloutConfig:
    max_unroll: int
    curriculum_steps: int
    sampler_steps: int


@dataclass
class TrainConfig:
    """A training run (configs/train.yaml). `model` is the denoiser's own arguments, which each
    architecture defines (`models.registry`); `expect` what the data must hold (task, frame and
    action shapes; tools/train.py fills it from `task=`)."""

    data: str
    run_dir: str
    model: dict[str, Any]
    diffusion: DiffusionConfig
    sampler: Any  # a SamplerConfig (frozen, so built after the check)
    pose: PoseConfig
    optim: OptimConfig
    window: WindowConfig
    rollout: RolloutConfig
    resume: bool
    seed: int
    device: str
    steps: int
    batch_size: int
    gradient_accumulation_steps: int
    mixed_precision: str
    compile: Any  # true | false | "auto"
    ema_decay: float
    reward_weight: float
    termination_weight: float
    success_weight: float
    log_every: int
    save_every: int
    val_every: int
    val_horizons: list[int]
    val_episodes: int
    start_bank_size: int
    export_dtype: str
    tensorboard: bool
    dynamics: DynamicsConfig | None = None
    codec: CodecConfig | None = None
    expect: dict[str, Any] = field(default_factory=dict)

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
        reason = str(getattr(error, "msg", error)).splitlines()[0]  # the rest repeats the key and names the class
        raise ValueError(f"training config, {where}: {reason}. The keys and what they mean: configs/train.yaml.") from error
    typed.sampler = SamplerConfig(**typed.sampler)
    return typed
