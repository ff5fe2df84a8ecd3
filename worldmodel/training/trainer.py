"""Training loop on accelerate: one CPU to many GPUs, bf16 mixed precision, resumable.

`train(cfg)` takes the fully resolved config as a plain dict (tools/train.py resolves hydra's).
A run directory holds everything:

    run_dir/config.json        the config the run was started with (resume refuses another)
    run_dir/state/             accelerate state: weights, optimiser, scheduler, EMA, RNG, progress
    run_dir/model.pt           the exported, self-contained checkpoint (EMA weights)
    run_dir/validation/        side-by-side videos of imagined vs real rollouts
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

import worldmodel
from worldmodel.checkpoint import save_checkpoint
from worldmodel.data.reader import RolloutReader
from worldmodel.data.windows import RolloutWindows, collate_windows
from worldmodel.diffusion import EDM
from worldmodel.evaluation.fidelity import rollout_fidelity
from worldmodel.models import build_networks
from worldmodel.rollout import SamplerConfig, WorldModel
from worldmodel.training.ema import EMA
from worldmodel.training.losses import WindowLoss, WindowLossConfig

logger = logging.getLogger(__name__)

# Keys that may differ when resuming: they do not change what is being trained.
RESUMABLE_KEYS = ("steps", "resume", "log_every", "save_every", "val_every", "tensorboard")


def lr_factor(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `min_ratio` at `steps`."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, steps))))
    return warm * (min_ratio + (1 - min_ratio) * cosine)


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


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
    """Step counter and RNG of the noise draws, saved with the accelerate state."""

    def __init__(self, seed: int):
        self.step = 0
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"step": self.step, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])


def dataset_fingerprint(path: Path) -> dict[str, Any]:
    """Identifies the training data without hashing gigabytes: size, episode index and metadata."""
    with RolloutReader(path) as reader:
        h = hashlib.sha256()
        for arr in (reader.frame_start, reader.lengths, reader.seeds):
            h.update(arr.tobytes())
        h.update(json.dumps(reader.metadata, sort_keys=True).encode())
        return {"path": str(path), "episodes": reader.num_episodes, "frames": reader.num_frames, "sha256": h.hexdigest()}


def action_space_of(metadata: dict[str, Any]) -> dict[str, Any]:
    return {"type": "box", "low": metadata["action_low"], "high": metadata["action_high"], "shape": metadata["action_shape"]}


def start_bank(dataset: RolloutWindows, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Real start contexts (the first K frames and K-1 actions of distinct windows) for env resets."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(size, len(dataset)), replace=False)
    k = dataset.context
    items = [dataset[int(i)] for i in picks]
    return {
        "frames": torch.stack([it["frames"][:k] for it in items]).contiguous(),
        "actions": torch.stack([it["actions"][: k - 1] for it in items]).contiguous(),
    }


def reward_stats(path: Path) -> dict[str, float]:
    with RolloutReader(path) as reader:
        n = int(reader.step_start[-1] + reader.lengths[-1])
        total, total_sq, lo, hi, count = 0.0, 0.0, math.inf, -math.inf, 0
        for start in range(0, n, 1 << 16):  # bounded memory on large files
            r = reader.file["rewards"][start : min(n, start + (1 << 16))].astype(np.float64)
            total, total_sq, count = total + r.sum(), total_sq + (r**2).sum(), count + len(r)
            lo, hi = min(lo, float(r.min())), max(hi, float(r.max()))
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean**2, 1e-12))
    return {"mean": mean, "std": max(std, 1e-3), "min": lo, "max": hi}


def _check_data_matches(path: Path, dataset: RolloutWindows, expect: dict[str, Any]) -> None:
    """The data must be what the config says it trains on (task, frame shape, action shape)."""
    found = {"task": dataset.metadata["task"], "frame_shape": list(dataset.frame_shape), "action_shape": dataset.metadata["action_shape"]}
    for key, value in expect.items():
        if value is not None and list(np.atleast_1d(value)) != list(np.atleast_1d(found[key])):
            raise ValueError(
                f"{path} holds data with {key} {found[key]}, but the config expects {value}. "
                "Train on data recorded for this task and frame size, or change the task/frame_size overrides."
            )


def _check_resume_config(run_dir: Path, cfg: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text())
    strip = lambda c: {k: v for k, v in c.items() if k not in RESUMABLE_KEYS}  # noqa: E731
    if strip(saved) != strip(cfg):
        diff = sorted(k for k in set(saved) | set(cfg) if k not in RESUMABLE_KEYS and saved.get(k) != cfg.get(k))
        raise TrainingError(
            f"Cannot resume {run_dir}: the config differs in {diff}. Resume with the original config "
            f"({run_dir / 'config.json'}) or start a new run_dir."
        )


def train(cfg: dict[str, Any]) -> Path:
    """Trains the world model described by `cfg`; returns the path of the exported model.pt.

    accelerate's state is process-global: one process trains with one mixed-precision setting.
    """
    run_dir = Path(cfg["run_dir"])
    data_path = Path(cfg["data"])
    accelerator = Accelerator(
        mixed_precision=cfg["mixed_precision"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        log_with="tensorboard" if cfg.get("tensorboard") else None,
        project_dir=str(run_dir),
        cpu=cfg.get("device") == "cpu",
    )
    set_seed(cfg["seed"], device_specific=False)
    dcfg = cfg["window"]
    k, f = dcfg["context"], dcfg["target"]
    train_set = RolloutWindows(data_path, k, f, dcfg["stride"], "train", dcfg["val_fraction"], dcfg["split_seed"], cache=dcfg["cache"])
    val_set = RolloutWindows(data_path, k, f, 1, "val", dcfg["val_fraction"], dcfg["split_seed"]) if dcfg["val_fraction"] > 0 else None
    metadata = train_set.metadata
    _check_data_matches(data_path, train_set, cfg.get("expect") or {})

    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_file = run_dir / "config.json"
        if cfg.get("resume") and config_file.exists():
            _check_resume_config(run_dir, cfg)
        elif (run_dir / "state").exists() and not cfg.get("resume"):
            raise TrainingError(f"{run_dir} already holds a run. Pass resume=true to continue it, or choose another run_dir.")
        else:
            config_file.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    accelerator.wait_for_everyone()

    action_space = action_space_of(metadata)
    denoiser, reward_head = build_networks(cfg["model"], action_space, k, f)
    stats = reward_stats(data_path)
    reward_head.reward_mean.fill_(stats["mean"])
    reward_head.reward_std.fill_(stats["std"])
    edm = EDM(**{k: cfg["diffusion"][k] for k in ("sigma_data", "loc", "scale", "sigma_min", "sigma_max")})
    loss_cfg = WindowLossConfig(k, f, cfg["diffusion"]["max_context_sigma"], cfg["reward_weight"], cfg["termination_weight"])
    model = WindowLoss(denoiser, reward_head, edm, loss_cfg)
    ocfg = cfg["optim"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=ocfg["lr"], weight_decay=ocfg["weight_decay"], betas=tuple(ocfg["betas"]))
    steps = int(cfg["steps"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps, int(ocfg["warmup_steps"]), float(ocfg["min_lr_ratio"]))
    )
    sampler = EpochSampler(len(train_set), cfg["seed"])
    loader = DataLoader(train_set, batch_size=cfg["batch_size"], sampler=sampler, num_workers=dcfg["num_workers"],
                        collate_fn=collate_windows, drop_last=True, persistent_workers=dcfg["num_workers"] > 0)
    if len(loader) == 0:
        raise ValueError(f"batch_size {cfg['batch_size']} is larger than the {len(train_set)} training windows.")
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    ema = EMA(accelerator.unwrap_model(model), decay=cfg["ema_decay"])
    progress = Progress(cfg["seed"] + accelerator.process_index)
    accelerator.register_for_checkpointing(ema, progress)
    if cfg.get("resume") and (run_dir / "state").exists():
        accelerator.load_state(str(run_dir / "state"))
        logger.info("resumed %s at step %d", run_dir, progress.step)
    if cfg.get("tensorboard"):
        accelerator.init_trackers("tb", config={k: str(v) for k, v in cfg.items()})

    per_epoch = len(loader)
    unwrapped = accelerator.unwrap_model(model)
    bar = tqdm(total=steps, initial=progress.step, desc="train", disable=not accelerator.is_main_process, dynamic_ncols=True)
    samples_seen, timer = 0, None
    while progress.step < steps:
        epoch, offset = divmod(progress.step * cfg["gradient_accumulation_steps"], per_epoch)
        sampler.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, offset) if offset else loader
        for batch in batches:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    losses = model(batch, progress.generator)
                if not torch.isfinite(losses["loss"]):
                    raise TrainingError(
                        f"loss is {losses['loss'].item()} at step {progress.step}; stopping. The last good state is in "
                        f"{run_dir / 'state'} (resume=true continues from it); lower optim.lr or check the data."
                    )
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), ocfg["grad_clip"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            ema.update(unwrapped)
            progress.step += 1
            samples_seen += cfg["batch_size"] * cfg["gradient_accumulation_steps"] * accelerator.num_processes
            timer = timer or bar.format_dict["elapsed"]
            bar.update(1)
            if progress.step % cfg["log_every"] == 0 or progress.step == steps:
                elapsed = max(bar.format_dict["elapsed"] - timer, 1e-9)
                logs = {k: round(v.item(), 4) for k, v in losses.items()}
                bar.set_postfix(loss=logs["loss"], samples_s=f"{samples_seen / elapsed:.1f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
                accelerator.log({**logs, "lr": scheduler.get_last_lr()[0]}, step=progress.step)
            if progress.step % cfg["save_every"] == 0 or progress.step == steps:
                _save_state(accelerator, run_dir)
            if val_set is not None and cfg["val_every"] and progress.step % cfg["val_every"] == 0 and accelerator.is_main_process:
                _validate(cfg, ema, edm, val_set, action_space, run_dir, progress.step, accelerator)
            if progress.step >= steps:
                break
    bar.close()
    path = run_dir / "model.pt"
    if accelerator.is_main_process:
        save_checkpoint(path, {
            "config": cfg,
            "denoiser": ema.shadow.denoiser.state_dict(),
            "reward_head": ema.shadow.reward_head.state_dict(),
            "frame_shape": list(train_set.frame_shape),
            "action_space": action_space,
            "task": metadata["task"],
            "reward_stats": stats,
            "start_bank": start_bank(train_set, cfg["start_bank_size"], cfg["seed"]),
            "provenance": {
                "dataset": dataset_fingerprint(data_path),
                "code_version": worldmodel.__version__,
                "steps": progress.step,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        })
        logger.info("exported %s", path)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return path


def _save_state(accelerator: Accelerator, run_dir: Path) -> None:
    """Saves to state.tmp and renames: a crash mid-save keeps the previous state."""
    tmp, final = run_dir / "state.tmp", run_dir / "state"
    accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        old = run_dir / "state.old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _validate(cfg, ema, edm, val_set, action_space, run_dir, step, accelerator) -> None:
    """Imagined vs real rollouts on held-out episodes: PSNR at a few horizons, a side-by-side video."""
    wm = WorldModel(ema.shadow.denoiser, ema.shadow.reward_head, edm, cfg["window"]["context"],
                    val_set.frame_shape, action_space, SamplerConfig(**cfg["sampler"]), device=accelerator.device,
                    bf16=cfg["mixed_precision"] == "bf16")
    result = rollout_fidelity(wm, val_set.path, val_set.episodes, cfg["val_horizons"], cfg["val_episodes"],
                              video=run_dir / "validation" / f"step{step:07d}.mp4", seed=cfg["seed"])
    logs = {f"val/psnr_h{h}": v for h, v in result["psnr"].items()} | {f"val/copy_last_h{h}": v for h, v in result["copy_last_psnr"].items()}
    logger.info("step %d validation: %s", step, {k: round(v, 2) for k, v in logs.items()})
    accelerator.log(logs, step=step)
    ema.shadow.eval()
