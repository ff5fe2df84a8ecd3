"""Training loop on accelerate: one CPU to many GPUs, bf16 mixed precision, resumable.

`train(cfg)` takes the fully resolved config (`config.TrainConfig`, or plain data as tools/train.py
resolves hydra's, checked against it).
What the run directory holds is in `worldmodel.training.run_dir`; the exported checkpoint is
written by `worldmodel.training.export`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from worldmodel.checks import whole_number
from worldmodel.compiling import compile_enabled, resolve_precision
from worldmodel.data.stats import action_space_of, dataset_fingerprint, reward_stats, state_stats, task_of
from worldmodel.data.windows import RolloutWindows, collate_windows
from worldmodel.diffusion import SamplerConfig
from worldmodel.evaluation.fidelity import rollout_fidelity
from worldmodel.models import build_dynamics, build_networks
from worldmodel.models.codec import FrameCodec, latent_shape
from worldmodel.models.state_dynamics import StateDynamics
from worldmodel.pose import PoseMaps, PoseProjector, qpos_limits, task_model
from worldmodel.spec import ModelSpec
from worldmodel.training import run_dir as run_files
from worldmodel.training.codec import train_codec
from worldmodel.training.config import TrainConfig, training_config
from worldmodel.training.dynamics import STEPS_PER_RUN_STEP, state_track_steps, train_dynamics
from worldmodel.training.ema import EMA
from worldmodel.training.export import export_model, spec_from_config
from worldmodel.training.losses import WindowLoss, WindowLossConfig
from worldmodel.training.run_dir import TrainingError
from worldmodel.world_model import WorldModel

logger = logging.getLogger(__name__)

__all__ = ["TrainingError", "lr_factor", "train"]


def lr_factor(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `min_ratio` at `steps`."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, steps))))
    return warm * (min_ratio + (1 - min_ratio) * cosine)


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch): data order is a function of the step."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


class Progress:
    """Step counter and the RNGs of a run, saved with the accelerate state: `generator` draws the
    noise on the training device (no host copies on a GPU), `host` the unroll lengths (a host
    number: drawn on the device it would cost a sync per step)."""

    def __init__(self, seed: int, device: torch.device | str = "cpu"):
        self.step = 0
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.host = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"step": self.step, "generator": self.generator.get_state(), "host": self.host.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        if "host" in state:  # states saved before the host generator existed drew unroll lengths from `generator`
            self.host.set_state(state["host"])


def _check_data_matches(path: Path, dataset: RolloutWindows, expect: dict[str, Any]) -> None:
    """The data must be what the config says it trains on (task, frame shape, action shape)."""
    found = {"task": dataset.metadata["task"], "frame_shape": list(dataset.frame_shape), "action_shape": dataset.metadata["action_shape"]}
    for key, value in expect.items():
        if value is not None and list(np.atleast_1d(value)) != list(np.atleast_1d(found[key])):
            raise ValueError(
                f"{path} holds data with {key} {found[key]}, but the config expects {value}. "
                "Train on data recorded for this task and frame size, or change the task/frame_size overrides."
            )


def _check_numbers(cfg: TrainConfig) -> None:
    """Step counts and intervals a run cannot work without, before anything is written."""
    for key, minimum in (
        ("steps", 1),
        ("batch_size", 1),
        ("gradient_accumulation_steps", 1),
        ("save_every", 1),
        ("log_every", 1),
        ("val_every", 0),
        ("start_bank_size", 1),
    ):
        whole_number(getattr(cfg, key), key, minimum)
    for key in ("max_unroll", "curriculum_steps"):
        whole_number(getattr(cfg.rollout, key), f"rollout.{key}", 0)
    whole_number(cfg.rollout.sampler_steps, "rollout.sampler_steps", 1)
    if cfg.dynamics and cfg.dynamics.steps != "auto":
        whole_number(cfg.dynamics.steps, f"dynamics.steps (or auto: {STEPS_PER_RUN_STEP} x steps)", 1)


def train(cfg: TrainConfig | Mapping[str, Any]) -> Path:
    """Trains the world model described by `cfg` (a `TrainConfig`, or the composed config as plain
    data, checked against it); returns the path of the exported model.pt.

    accelerate's state is process-global: one process trains with one mixed-precision setting.
    """
    cfg = training_config(cfg)
    _check_numbers(cfg)
    cfg = dataclasses.replace(cfg, mixed_precision=resolve_precision(cfg.mixed_precision, cfg.device))
    run_dir, data_path = Path(cfg.run_dir), Path(cfg.data)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        dataloader_config=DataLoaderConfiguration(non_blocking=True),  # with pinned batches: copies overlap the step
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with="tensorboard" if cfg.tensorboard else None,
        project_dir=str(run_dir),
        cpu=cfg.device == "cpu",
    )
    set_seed(cfg.seed, device_specific=False)
    w = cfg.window
    # Rollout training needs the U real frames that the model replaces with its own, and their actions.
    extra = cfg.rollout.max_unroll
    train_set = RolloutWindows(
        data_path,
        w.context,
        w.target + extra,
        w.stride,
        "train",
        w.val_fraction,
        w.split_seed,
        cache=w.cache,
        states=bool(cfg.dynamics),
    )
    val_set = RolloutWindows(data_path, w.context, w.target, 1, "val", w.val_fraction, w.split_seed) if w.val_fraction > 0 else None
    _check_data_matches(data_path, train_set, cfg.expect)
    if cfg.dynamics and train_set.metadata["nq"] + train_set.metadata["nv"] == 0:
        raise ValueError(
            f"{data_path} holds no simulator state (nq = nv = 0: data imported from images alone), which the state track "
            "learns from: train it with dynamics=none."
        )
    run_files.prepare(run_dir, cfg, dataset_fingerprint(data_path), accelerator)

    task = task_of(data_path)
    simulator = "env_id" in task and "camera" in task  # a MuJoCo model to draw pose maps with and read joint limits from
    if cfg.dynamics and not simulator:
        logger.warning("%s names no MuJoCo task (imported data): the state track trains without pose maps and joint limits", data_path)
    mujoco_model = task_model(task) if cfg.dynamics and simulator else None  # built once: pose maps and joint limits
    pose_maps = None
    if mujoco_model is not None and cfg.pose.maps:
        bodies = cfg.pose.bodies or task.get("pose_bodies") or None  # the config's, else the task's choice, else all
        size = latent_shape(train_set.frame_shape, vars(cfg.codec))[:2] if cfg.codec else train_set.frame_shape[:2]  # the denoiser's
        pose_maps = PoseMaps(PoseProjector(mujoco_model, task["camera"], size, bodies), cfg.pose.sigma)
    spec = spec_from_config(
        cfg,
        task,
        train_set.frame_shape,
        action_space_of(train_set.metadata),
        (train_set.metadata["nq"], train_set.metadata["nv"]),
        None if pose_maps is None else pose_maps.projector.bodies,
        simulator,
    )
    stats = reward_stats(data_path)
    model = _objective(spec, cfg, stats, data_path, pose_maps, mujoco_model)
    if model.dynamics is not None:
        _state_track(model.dynamics, cfg, data_path, train_set.episodes, run_dir, accelerator)
    if model.codec is not None:
        _codec_stage(model.codec, cfg, spec.split, data_path, run_dir, accelerator)
    optimizer, scheduler = _optimiser(model, cfg)
    sampler = EpochSampler(len(train_set), cfg.seed)
    collate = collate_windows if pose_maps is None else pose_maps.with_segments(collate_windows)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=w.num_workers,
        collate_fn=collate,
        drop_last=True,
        persistent_workers=w.num_workers > 0,
        pin_memory=accelerator.device.type == "cuda",
    )
    if len(loader) == 0:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(train_set)} training windows.")
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    ema = EMA(accelerator.unwrap_model(model), decay=cfg.ema_decay)
    if compile_enabled(cfg.compile, accelerator.device):  # after the EMA's copy: its shadow stays eager
        accelerator.unwrap_model(model).denoiser.compile()
    progress = Progress(cfg.seed + accelerator.process_index, accelerator.device)
    accelerator.register_for_checkpointing(ema, progress)
    state = run_files.latest_state(run_dir) if cfg.resume else None
    if state is not None:
        try:
            accelerator.load_state(str(state))
        except (ValueError, RuntimeError, KeyError) as error:  # parameters of another shape or count
            raise TrainingError(
                f"Cannot resume {run_dir} from {state.name}: its saved training state does not fit this version's networks "
                f"({error}). States saved before a change to the networks' parameters (such as the adaptive norms' "
                f"projections becoming one `Modulation`) do not resume; a finished run's model.pt still loads. Resume with "
                f"the version that started the run, or train into a new run_dir."
            ) from error
        logger.info("resumed %s at step %d from %s", run_dir, progress.step, state.name)
    if cfg.tensorboard:
        accelerator.init_trackers("tb", config={k: str(v) for k, v in cfg.plain().items()})

    validate = None
    if val_set is not None and cfg.val_every:
        validate = lambda step: _validate(cfg, spec, ema, val_set, run_dir, step, accelerator)  # noqa: E731
    with logging_redirect_tqdm():  # log lines go above the progress bar, not through it
        _loop(cfg, accelerator, model, optimizer, scheduler, loader, sampler, ema, progress, run_dir, validate)

    path = run_dir / "model.pt"
    if accelerator.is_main_process:
        export_model(path, spec, ema.shadow, train_set, data_path, stats, cfg, progress.step)
        logger.info("exported %s", path)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return path


def _state_track(dynamics: StateDynamics, cfg: TrainConfig, data_path: Path, episodes, run_dir: Path, accelerator) -> None:
    """Trains the state track before the denoiser, or loads it from the run (resume). Every
    process trains its own copy from the same seed; only the main process's is exported."""
    path = run_dir / "state_dynamics.pt"
    if cfg.resume and path.exists():
        dynamics.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        dynamics.eval().requires_grad_(False)
        logger.info("state dynamics loaded from %s", path)
    else:
        d = cfg.dynamics
        steps = state_track_steps(d.steps, cfg.steps)
        logger.info("state track: %d steps (dynamics.steps=%s) before the denoiser's %d", steps, d.steps, cfg.steps)
        train_dynamics(
            dynamics,
            data_path,
            episodes,
            steps=steps,
            batch_size=d.batch_size,
            horizon=d.horizon,
            lr=d.lr,
            seed=cfg.seed,
            device=accelerator.device,
            progress=accelerator.is_main_process,
        )
        if accelerator.is_main_process:  # atomically: a run killed while saving leaves no half-written file to resume from
            torch.save(dynamics.state_dict(), path.with_name(path.name + ".tmp"))
            os.replace(path.with_name(path.name + ".tmp"), path)
    dynamics.to(accelerator.device)


def _codec_stage(codec: FrameCodec, cfg: TrainConfig, split: dict[str, Any], data_path: Path, run_dir: Path, accelerator) -> None:
    """Trains a latent model's frame codec before the denoiser, or loads it from the run (resume);
    frozen after. `split`: the spec's train/val split, the denoiser's. Every process trains its own
    copy from the same seed; the main process's is saved."""
    path = run_dir / "codec.pt"
    if cfg.resume and path.exists():
        codec.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        logger.info("codec loaded from %s", path)
    else:
        train_codec(
            codec,
            data_path,
            split,
            steps=cfg.codec.steps,
            batch_size=cfg.codec.batch_size,
            lr=cfg.codec.lr,
            seed=cfg.seed,
            sigma_data=cfg.diffusion.sigma_data,
            device=accelerator.device,
            bf16=cfg.mixed_precision == "bf16",
            progress=accelerator.is_main_process,
        )
        if accelerator.is_main_process:
            torch.save(codec.state_dict(), path.with_name(path.name + ".tmp"))
            os.replace(path.with_name(path.name + ".tmp"), path)
    codec.to(accelerator.device).eval().requires_grad_(False)


def _objective(
    spec: ModelSpec, cfg: TrainConfig, stats: dict[str, float], data_path: Path, pose_maps: PoseMaps | None, mujoco_model=None
) -> WindowLoss:
    """The trained modules (denoiser, reward head with the data's reward statistics, the optional
    state track, its joint limits read from `mujoco_model`, the task's) and their loss (with the
    pose maps the denoiser reads, if any)."""
    denoiser, reward_head = build_networks(spec.denoiser, spec.reward_head, spec.action_space, spec.context, spec.target)
    reward_head.reward_mean.fill_(stats["mean"])
    reward_head.reward_std.fill_(stats["std"])
    loss_cfg = WindowLossConfig(
        spec.context,
        spec.target,
        cfg.diffusion.max_context_sigma,
        cfg.reward_weight,
        cfg.termination_weight,
        SamplerConfig(steps=cfg.rollout.sampler_steps),
        cfg.success_weight,
    )
    dynamics = build_dynamics(spec.dynamics, spec.action_space)
    if dynamics is not None:
        state = state_stats(data_path)
        dynamics.set_statistics(state["mean"], state["std"], state["delta_std"])
        if dynamics.joint_limits:
            dynamics.set_limits(*qpos_limits(mujoco_model, state["qpos_min"], state["qpos_max"]))
    codec = FrameCodec(**spec.codec) if spec.codec else None
    return WindowLoss(denoiser, reward_head, spec.edm, loss_cfg, dynamics, pose_maps, codec)


def _optimiser(model: torch.nn.Module, cfg: TrainConfig):
    """AdamW with linear warm-up and cosine decay (`lr_factor`) over cfg.steps."""
    o, steps = cfg.optim, cfg.steps
    # The state track and a codec are trained before (stages of their own)
    groups = [{"params": [p for name, p in model.named_parameters() if not name.startswith(("dynamics.", "codec."))]}]
    # fused: one kernel for all parameters' updates (CUDA and CPU) instead of a dozen per tensor
    optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps, o.warmup_steps, o.min_lr_ratio))
    return optimizer, scheduler


def unroll_length(step: int, max_unroll: int, curriculum_steps: int, generator: torch.Generator) -> int:
    """Rollout training's unroll for one batch: uniform in [0, current maximum], where the maximum
    ramps linearly from 0 to `max_unroll` over the first `curriculum_steps` steps (then stays)."""
    if max_unroll <= 0:
        return 0
    current = max_unroll if curriculum_steps <= 0 else min(max_unroll, math.ceil(max_unroll * step / curriculum_steps))
    return int(torch.randint(0, current + 1, (1,), generator=generator))


def _loop(cfg, accelerator, model, optimizer, scheduler, loader, sampler, ema, progress, run_dir, validate) -> None:
    """Optimiser steps until cfg.steps: logging, periodic state saves and validation.

    Nothing in a step waits for the device: the losses are read (and checked to be finite) only at
    log and save steps, so a GPU's queue stays full; a non-finite loss stops the run before it is saved.
    """
    steps, r = cfg.steps, cfg.rollout
    per_epoch = len(loader)
    unwrapped = accelerator.unwrap_model(model)
    bar = tqdm(total=steps, initial=progress.step, desc="train", disable=not accelerator.is_main_process, dynamic_ncols=True)
    speed = Throughput(cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes)
    finite, checked = torch.ones((), dtype=torch.bool, device=accelerator.device), progress.step
    while progress.step < steps:
        epoch, offset = divmod(progress.step * cfg.gradient_accumulation_steps, per_epoch)
        sampler.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, offset) if offset else loader
        for batch in batches:
            with accelerator.accumulate(model):
                unroll = unroll_length(progress.step, r.max_unroll, r.curriculum_steps, progress.host)
                with accelerator.autocast():
                    losses = model(batch, progress.generator, unroll)
                finite &= torch.isfinite(losses["loss"].detach())
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            ema.update(unwrapped)
            progress.step += 1
            speed.step()
            bar.update(1)
            log, save = (
                progress.step % cfg.log_every == 0 or progress.step == steps,
                progress.step % cfg.save_every == 0 or progress.step == steps,
            )
            if log or save:
                if not finite:
                    raise TrainingError(
                        f"the loss was not finite between steps {checked} and {progress.step}; stopping. The last good state is in "
                        f"{run_dir / 'state'} (resume=true continues from it); lower optim.lr or check the data."
                    )
                checked = progress.step
            if log:
                logs = {k: round(v.item(), 4) for k, v in losses.items()}
                bar.set_postfix(loss=logs["loss"], samples_s=f"{speed.rate():.1f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
                accelerator.log({**logs, "lr": scheduler.get_last_lr()[0]}, step=progress.step)
            if save:
                run_files.save_state(accelerator, run_dir)
            if validate is not None and progress.step % cfg.val_every == 0 and accelerator.is_main_process:
                validate(progress.step)
            if progress.step >= steps:
                break
    bar.close()
    if accelerator.is_main_process and speed.steps:
        run_files.write_speed(run_dir, speed.summary())


class Throughput:
    """Training speed after the first step (which pays for compiling and warm-up, reported apart).
    Read (`rate`) at log steps, where the device has caught up: the host runs ahead between them."""

    def __init__(self, samples_per_step: int):
        self.samples_per_step, self.steps, self.start, self.first_s, self.last = samples_per_step, 0, time.perf_counter(), 0.0, 0.0

    def step(self) -> None:
        self.steps += 1
        if self.steps == 1:
            self.first_s = time.perf_counter() - self.start
            self.start = time.perf_counter()

    def rate(self) -> float:
        self.last = (self.steps - 1) * self.samples_per_step / max(time.perf_counter() - self.start, 1e-9)
        return self.last

    def summary(self) -> dict[str, float]:
        """At the end: the rate last read (state saves and validation after it are not training)."""
        return {"steps": self.steps, "samples_per_s": round(self.last, 2), "first_step_s": round(self.first_s, 2)}


def _validate(cfg, spec, ema, val_set, run_dir, step, accelerator) -> None:
    """Imagined vs real rollouts on held-out episodes: PSNR at a few horizons, a side-by-side video."""
    wm = WorldModel(
        ema.shadow.denoiser,
        ema.shadow.reward_head,
        spec,
        device=accelerator.device,
        bf16=cfg.mixed_precision == "bf16",
        dynamics=ema.shadow.dynamics,
        pose_maps=ema.shadow.pose_maps,
        codec=ema.shadow.codec,
    )
    result = rollout_fidelity(
        wm,
        val_set.path,
        val_set.episodes,
        cfg.val_horizons,
        cfg.val_episodes,
        video=run_dir / "validation" / f"step{step:07d}.mp4",
        seed=cfg.seed,
    )
    logs = {f"val/psnr_h{h}": v for h, v in result["psnr"].items()} | {
        f"val/copy_last_h{h}": v for h, v in result["copy_last_psnr"].items()
    }
    logger.info("step %d validation: %s", step, {k: round(v, 2) for k, v in logs.items()})
    accelerator.log(logs, step=step)
    ema.shadow.eval()
