"""Training the frame codec (`models.codec.FrameCodec`) of a latent model, a stage before the denoiser's.

It reconstructs single frames, so it learns from every recorded frame at once (random frames of
the training episodes, read from the file as batches need them) and is frozen before the denoiser
trains on its latents.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from worldmodel.data.windows import RolloutWindows, collate_windows
from worldmodel.frames import psnr, to_model, to_uint8
from worldmodel.models.codec import FrameCodec

logger = logging.getLogger(__name__)


def _frames(batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """A batch of 2-frame windows -> (2B, 3, H, W) frames in [-1, 1] on `device`."""
    return rearrange(to_model(batch["frames"].to(device)), "b t c h w -> (b t) c h w")


def train_codec(
    codec: FrameCodec,
    path: str | Path,
    split: dict[str, Any],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    sigma_data: float,
    device: torch.device | str = "cpu",
    bf16: bool = True,
    progress: bool = True,
) -> dict[str, float]:
    """Fits `codec` in place on the training split of `path` (split: {"val_fraction", "split_seed"},
    as the denoiser's): `steps` AdamW steps (cosine decay from `lr`) on batches of
    2 x `batch_size` frames; then scales its latents to std `sigma_data`. Returns the last
    loss and the reconstruction PSNR (dB, frames in [0, 255]) of up to 512 held-out frames."""
    device = torch.device(device)
    windows = RolloutWindows(path, 1, 1, 1, "train", split["val_fraction"], split["split_seed"])
    generator = torch.Generator().manual_seed(seed)
    steps, batch = int(steps), int(batch_size)
    loader = DataLoader(
        windows,
        batch_size=batch,
        sampler=RandomSampler(windows, replacement=True, num_samples=steps * batch, generator=generator),
        collate_fn=collate_windows,
        drop_last=True,
    )
    codec.to(device).train()
    optimizer = torch.optim.AdamW(codec.parameters(), lr=float(lr), weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / max(1, steps))))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    loss = torch.zeros(())
    for item in tqdm(loader, total=steps, desc="codec", disable=not progress, dynamic_ncols=True):
        with autocast:
            loss = codec.loss(_frames(item, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    codec.eval().requires_grad_(False)
    with torch.no_grad(), autocast:
        sample = next(iter(DataLoader(windows, batch_size=256, shuffle=True, generator=generator, collate_fn=collate_windows)))
        codec.scale.fill_(sigma_data / codec.encode(_frames(sample, device)).float().std().clamp_min(1e-6).item())
        result = {"loss": float(loss), "psnr": reconstruction_psnr(codec, path, split, device, autocast)}
    logger.info("codec: last loss %.4f, held-out reconstruction PSNR %.2f dB", result["loss"], result["psnr"])
    return result


def reconstruction_psnr(
    codec: FrameCodec, path: str | Path, split: dict[str, Any], device: torch.device, autocast, frames: int = 512
) -> float:
    """PSNR (dB) of the codec's round trip on up to `frames` frames of the validation split (the
    training split when there is none), both rounded to uint8 as an env shows them."""
    val = RolloutWindows(path, 1, 1, 1, "val" if split["val_fraction"] > 0 else "train", split["val_fraction"], split["split_seed"])
    step = max(1, len(val) // (frames // 2))
    batch = collate_windows([val[i] for i in range(0, len(val), step)][: frames // 2])
    with torch.no_grad(), autocast:
        out = codec.decode(codec.encode(_frames(batch, device)))
    return float(psnr(to_uint8(out).cpu(), rearrange(batch["frames"], "b t h w c -> (b t) h w c")).mean())
