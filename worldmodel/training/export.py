"""From a training config and its data to the model spec, and from trained weights to `model.pt`."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import torch

import worldmodel
from worldmodel.checkpoint import save_checkpoint
from worldmodel.data.stats import dataset_fingerprint, episode_fingerprints, start_bank
from worldmodel.diffusion import EDM
from worldmodel.spec import ModelSpec
from worldmodel.training.config import TrainConfig

EDM_KEYS = ("sigma_data", "loc", "scale", "sigma_min", "sigma_max")


def spec_from_config(
    cfg: TrainConfig,
    task: dict[str, Any],
    frame_shape: tuple[int, int, int],
    action_space: dict[str, Any],
    state_size: tuple[int, int] | None = None,
    pose_bodies: list[str] | None = None,
    simulator: bool = True,
) -> ModelSpec:
    """The spec of the model a training config (configs/train.yaml) trains on data of `task`.

    state_size: the data's (nq, nv); needed with a state track (`dynamics=...`); pose_bodies: the
    bodies the pose maps draw (`worldmodel.pose`), resolved from the task's model; with a state track
    and `pose.maps`, else no pose maps. simulator: whether the task names a MuJoCo env whose model
    can be built (data imported without one has neither pose maps nor joint limits)."""
    model, dynamics = cfg.model, {}
    denoiser = {k: v for k, v in model.items() if k != "reward_channels"}
    if cfg.dynamics:
        if state_size is None:
            raise ValueError("a state track (dynamics=...) needs the data's state size (nq, nv).")
        nq, nv = state_size
        dynamics = {"nq": int(nq), "nv": int(nv), "hidden": cfg.dynamics.hidden, "layers": cfg.dynamics.layers}
        if cfg.dynamics.joint_limits and simulator:
            dynamics["joint_limits"] = True
        denoiser["state_dim"] = 2 * dynamics["nq"] + dynamics["nv"]
    pose = {}
    if dynamics and simulator and cfg.pose.maps:
        if not pose_bodies:
            raise ValueError("pose maps (pose.maps=true) need the bodies to draw, resolved from the task's model.")
        pose = {"bodies": list(pose_bodies), "sigma": cfg.pose.sigma}
        denoiser["pose_channels"] = len(pose_bodies)
    codec = {}
    if cfg.codec:
        codec = {"latent_channels": cfg.codec.latent_channels, "channels": list(cfg.codec.channels)}
        if cfg.rollout.max_unroll:
            raise ValueError(
                "a latent model (codec=...) does not support ['rollout.max_unroll'] yet: set it off (0) or train a pixel "
                "model (codec=none)."
            )
        denoiser["image_channels"] = codec["latent_channels"]
    return ModelSpec(
        denoiser=denoiser,
        reward_head={"channels": int(model["reward_channels"]), "success": True}
        | ({"state_dim": denoiser["state_dim"]} if dynamics else {}),
        context=cfg.window.context,
        target=cfg.window.target,
        edm=EDM(**{k: getattr(cfg.diffusion, k) for k in EDM_KEYS}),
        sampler=cfg.sampler,
        action_space=action_space,
        frame_shape=tuple(frame_shape),
        task=task,
        split={"val_fraction": cfg.window.val_fraction, "split_seed": cfg.window.split_seed},
        dynamics=dynamics,
        pose=pose,
        codec=codec,
    )


def weights_as(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """module's state dict with its parameters in `dtype` (loading casts them back); buffers
    (statistics such as the reward's mean and std) keep their precision."""
    parameters = {name for name, _ in module.named_parameters()}
    return {k: v.to(dtype) if k in parameters and v.is_floating_point() else v for k, v in module.state_dict().items()}


def export_model(
    path: Path, spec: ModelSpec, shadow, train_set, data_path: Path, reward_stats: dict[str, float], cfg: TrainConfig, steps: int
) -> Path:
    """Writes the self-contained checkpoint: `shadow`'s (EMA) denoiser and reward head (parameters in
    cfg.export_dtype), a bank of `cfg.start_bank_size` real start contexts from `train_set`,
    the state track (float32: it is rolled forward for hundreds of steps), a latent model's codec, and provenance."""
    extra = {"dynamics": shadow.dynamics.state_dict()} if spec.has_state else {}
    if spec.codec:  # float32 like the state track: every imagined frame passes through it
        extra["codec"] = shadow.codec.state_dict()
    dtype = getattr(torch, cfg.export_dtype)
    return save_checkpoint(
        path,
        spec,
        extra
        | {
            "denoiser": weights_as(shadow.denoiser, dtype),
            "reward_head": weights_as(shadow.reward_head, dtype),
            "reward_stats": reward_stats,
            "start_bank": start_bank(train_set, cfg.start_bank_size, cfg.seed),
            "provenance": {
                # the trained episodes themselves, so evaluation recognises them in any file (a re-recording too)
                "dataset": dataset_fingerprint(data_path)
                | {"train_episodes": episode_fingerprints(data_path, sorted(set(train_set.index[:, 0].tolist())))},
                "code_version": worldmodel.__version__,
                "steps": steps,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            },
            "training_config": cfg.plain(),
        },
    )
