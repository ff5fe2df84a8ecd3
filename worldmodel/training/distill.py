"""One-step distillation of a trained world model's sampler.

The student starts as a copy of the teacher's denoiser and learns to land, in one call from pure
noise, where the teacher's N-step sampler lands from the same noise, context and conditioning
(Luhman & Luhman 2021; with a two-step teacher, one round of Salimans & Ho's progressive
distillation). Its windows are the teacher's training file's own training split, and their inputs
are built exactly as at imagination time (`WorldModel.step_inputs`: the state track's imagined next
state and its pose maps, the sampler's context noise), so the student learns the mapping it is used
for. The result is an ordinary `model.pt` whose sampler is one Euler step (which returns the
denoiser's estimate at the sampler's top noise level: one call).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from worldmodel.checkpoint import load_checkpoint, save_checkpoint
from worldmodel.checks import whole_number
from worldmodel.data.stats import dataset_fingerprint
from worldmodel.data.windows import RolloutWindows, collate_windows
from worldmodel.diffusion import SamplerConfig, sample
from worldmodel.models import build_networks
from worldmodel.training.export import weights_as
from worldmodel.training.trainer import EpochSampler, lr_factor
from worldmodel.world_model import StepInputs, WorldModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """teacher_sampler: overrides of the teacher's own sampler (its sigma range and context level
    stay), e.g. {"steps": 3}; steps, batch_size: the student's optimiser steps and windows per step;
    lr: AdamW's, with linear warm-up and cosine decay to lr * min_lr_ratio; gap_batches: held-out
    batches on which the distance to the teacher's samples is reported before and after."""

    teacher_sampler: dict = dataclasses.field(default_factory=lambda: {"steps": 3})
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 0
    gap_batches: int = 4

    def __post_init__(self):
        for key, minimum in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("num_workers", 0), ("gap_batches", 0)):
            whole_number(getattr(self, key), key, minimum)


def one_step(sampler: SamplerConfig) -> SamplerConfig:
    """The student's sampler: one Euler step over the teacher's sigma range (one denoiser call)."""
    return dataclasses.replace(sampler, method="euler", steps=1, churn=0.0)


def window_batches(
    teacher: WorldModel, data: str | Path, split: str, batch_size: int, seed: int, num_workers: int = 0, epochs: int | None = None
) -> Iterable[dict[str, Tensor]]:
    """Batches of K+1-frame windows of the teacher's `split` ("train" | "val") of `data`, its
    training file, reshuffled every epoch from (seed, epoch); `epochs` None: without end."""
    spec = teacher.spec
    windows = RolloutWindows(data, spec.context, 1, 1, split, spec.split["val_fraction"], spec.split["split_seed"], states=spec.has_state)
    spec.check_data(data, windows.metadata["task"], windows.frame_shape, "distil on the file the teacher was trained on.")
    order = EpochSampler(len(windows), seed)
    loader = DataLoader(
        windows,
        batch_size=min(batch_size, len(windows)),
        sampler=order,
        num_workers=num_workers,
        collate_fn=collate_windows,
        drop_last=True,
    )
    epoch = 0
    while epochs is None or epoch < epochs:
        order.set_epoch(epoch)
        yield from loader
        epoch += 1


def teacher_inputs(teacher: WorldModel, batch: dict[str, Tensor], generator: torch.Generator) -> StepInputs:
    """The imagination-time inputs of a batch's target frame: its K real context frames (and
    states), the action that leads to it, fresh context and target noise."""
    k = teacher.context
    states = torch.cat([batch["qpos"], batch["qvel"]], dim=-1)[:, :k] if teacher.spec.has_state else None
    window = teacher.window(batch["frames"][:, :k], batch["actions"][:, : k - 1], states)
    return teacher.step_inputs(window, batch["actions"][:, k - 1], generator)


@torch.no_grad()
def teacher_gap(
    teacher: WorldModel, teacher_sampler: SamplerConfig, denoiser: nn.Module, batches: Iterable[dict[str, Tensor]], seed: int = 0
) -> float:
    """Mean squared distance (on the diffused targets, frames in [-1, 1] or latents) between one
    call of `denoiser` and the teacher's `teacher_sampler` from the same noise and inputs."""
    generator = torch.Generator(teacher.device).manual_seed(seed)
    total, count = 0.0, 0
    for batch in batches:
        inputs = teacher_inputs(teacher, batch, generator)
        target = sample(teacher.denoise_fn(inputs), inputs.target_noise, teacher_sampler, generator)
        out = sample(teacher.denoise_fn(inputs, denoiser), inputs.target_noise, one_step(teacher.sampler))
        total += float((out - target).pow(2).mean()) * len(out)
        count += len(out)
    return total / max(count, 1)


def distill(
    teacher_path: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: DistillConfig,
    device: str | torch.device = "cpu",
    bf16: bool | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] = iter,
) -> dict:
    """Distils the teacher checkpoint's `cfg.teacher_sampler` into one step; writes the student to
    `out` (a `model.pt` like the teacher's, with a one-step sampler and the distillation in its
    provenance). data: the teacher's training file. progress: wraps the step range (a tqdm bar).
    Returns {"out", "gap_before", "gap_after", "teacher_sampler", "samples"}: the held-out gaps
    (`teacher_gap`) of the teacher's own one call and of the student's."""
    teacher = WorldModel.load(teacher_path, device=device, bf16=bf16)
    ckpt = load_checkpoint(teacher_path)
    spec = ckpt["spec"]
    teacher_sampler = dataclasses.replace(teacher.sampler, **cfg.teacher_sampler)
    student = build_networks(spec.denoiser, spec.reward_head, spec.action_space, spec.context, spec.target)[0]
    student.load_state_dict(ckpt["denoiser"])
    student = student.to(teacher.device).train()
    if teacher.device.type == "cpu":
        student = student.to(memory_format=torch.channels_last)

    held_out = []
    if spec.split["val_fraction"] > 0:
        held_out = list(islice(window_batches(teacher, data, "val", cfg.batch_size, cfg.seed, epochs=1), cfg.gap_batches))
    gap_before = teacher_gap(teacher, teacher_sampler, teacher.denoiser, held_out, cfg.seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
    generator = torch.Generator(teacher.device).manual_seed(cfg.seed)
    batches = window_batches(teacher, data, "train", cfg.batch_size, cfg.seed, cfg.num_workers)
    samples = 0
    for step in progress(range(cfg.steps)):
        batch = next(batches)
        with torch.no_grad():
            inputs = teacher_inputs(teacher, batch, generator)
            target = sample(teacher.denoise_fn(inputs), inputs.target_noise, teacher_sampler, generator)
        guess = sample(teacher.denoise_fn(inputs, student), inputs.target_noise, one_step(teacher.sampler))
        loss = (guess - target).pow(2).mean()
        if not torch.isfinite(loss):
            raise RuntimeError(f"the distillation loss was not finite at step {step}; nothing was written. Lower lr (now {cfg.lr}).")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        samples += len(guess)
        if step % 10 == 0 or step == cfg.steps - 1:
            logger.info("step %d: distance to the teacher's %d-step samples %.5f", step, teacher_sampler.steps, loss.item())
    student.eval()
    gap_after = teacher_gap(teacher, teacher_sampler, student, held_out, cfg.seed)

    dtype = next(v.dtype for v in ckpt["denoiser"].values() if v.is_floating_point())  # the teacher's export precision
    payload = {k: v for k, v in ckpt.items() if k not in ("format", "format_version", "spec")}
    payload["denoiser"] = {k: v.contiguous() for k, v in weights_as(student, dtype).items()}
    payload["provenance"] = ckpt["provenance"] | {
        "distilled": {
            "teacher": str(teacher_path),
            "teacher_steps": int(ckpt["provenance"].get("steps", 0)),
            "teacher_sampler": dataclasses.asdict(teacher_sampler),
            "steps": cfg.steps,
            "samples": samples,
            "data": dataset_fingerprint(data),
            "gap_before": gap_before,
            "gap_after": gap_after,
        }
    }
    path = save_checkpoint(out, dataclasses.replace(spec, sampler=one_step(teacher.sampler)), payload)
    return {"out": path, "gap_before": gap_before, "gap_after": gap_after, "teacher_sampler": teacher_sampler, "samples": samples}
