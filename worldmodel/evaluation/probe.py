"""A position probe: errors of imagined frames in physical units.

PSNR punishes a thin arm one pixel off as much as a wrong pose. The probe is a small CNN trained
on real frames to regress the task's key positions (reacher: fingertip and target; pusher: object,
gripper and goal; x, y in the table plane, metres) from the recorded simulator state. Applied to
imagined and to real frames, it turns a rollout into position errors in cm; its own error on real
held-out frames is the floor of what it can measure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from worldmodel.compiling import cpu_has_native_bf16
from worldmodel.data.reader import RolloutReader

logger = logging.getLogger(__name__)

PROBE_FORMAT = "diffusionworld-probe"
PROBE_VERSION = 2
# (qpos (N, nq), qvel (N, nv)) -> (N, P, 2) key positions in metres, from the real simulator
Positions = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ProbeNet(nn.Module):
    """frames: (B, H, W, 3) uint8 -> (B, P, 2) standardised positions.

    A strided CNN with two coordinate channels next to RGB (CoordConv, Liu et al. 2018): where a
    feature fires is then in the features themselves, so pooling keeps it.
    """

    def __init__(self, points: int, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(5, w, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(4 * w, 4 * w, 3, 1, 1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * w, 256),
            nn.SiLU(),
            nn.Linear(256, 2 * points),
        )
        self.points = points

    def forward(self, frames_u8: Tensor) -> Tensor:
        x = rearrange(frames_u8, "b h w c -> b c h w").float() / 127.5 - 1
        b, _, h, w = x.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device), indexing="ij")
        x = torch.cat([x, xs.expand(b, 1, h, w), ys.expand(b, 1, h, w)], dim=1)
        return rearrange(self.features(x), "b (p two) -> b p two", two=2)


@dataclass
class Probe:
    """A trained probe: the network, the standardisation of its targets, the names of its points."""

    net: ProbeNet
    mean: Tensor  # (P, 2) metres
    std: Tensor  # (P, 2) metres
    names: list[str]
    frame_shape: tuple[int, int, int]

    @torch.no_grad()
    def __call__(self, frames_u8: Tensor, batch: int = 512) -> Tensor:
        """frames: (..., H, W, 3) uint8 -> (..., P, 2) positions in metres."""
        lead = frames_u8.shape[:-3]
        flat = frames_u8.reshape(-1, *frames_u8.shape[-3:])
        self.net.eval()
        out = (
            torch.cat([self.net(flat[i : i + batch]) for i in range(0, len(flat), batch)])
            if len(flat)
            else torch.zeros(0, len(self.names), 2)
        )
        return (out * self.std + self.mean).reshape(*lead, len(self.names), 2)

    def save(self, path: str | os.PathLike, provenance: dict) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "format": PROBE_FORMAT,
                "version": PROBE_VERSION,
                "net": self.net.state_dict(),
                "mean": self.mean,
                "std": self.std,
                "names": self.names,
                "frame_shape": list(self.frame_shape),
                "width": self.net.features[0].out_channels,
                "provenance": provenance,
            },
            tmp,
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple[Probe, dict]:
        """The probe and the provenance it was saved with (what it was trained on)."""
        d = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("format") != PROBE_FORMAT:
            raise ValueError(f"{path} is not a DiffusionWorld position probe; delete it to train a new one.")
        if d.get("version") != PROBE_VERSION:
            raise ValueError(f"{path} holds a probe of version {d.get('version')}; this code reads {PROBE_VERSION}.")
        net = ProbeNet(len(d["names"]), d["width"])
        net.load_state_dict(d["net"])
        return cls(net, d["mean"], d["std"], list(d["names"]), tuple(d["frame_shape"])), d["provenance"]


def labelled_frames(path: str | os.PathLike, episodes: Sequence[int], positions: Positions) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of `episodes` of a rollout file with its key positions: (N, H, W, 3) uint8, (N, P, 2) m."""
    frames, points = [], []
    with RolloutReader(path) as reader:
        for e in episodes:
            frames.append(reader.frames(e))
            points.append(positions(reader.frames(e, name="qpos"), reader.frames(e, name="qvel")))
    return np.concatenate(frames), np.concatenate(points).astype(np.float32)


def train_probe(
    frames_u8: np.ndarray,
    points: np.ndarray,
    names: Sequence[str],
    steps: int = 1500,
    batch: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    width: int = 32,
    progress: Callable[[range], range] = iter,
) -> Probe:
    """Fits a probe to frames (N, H, W, 3) uint8 and their positions (N, P, 2) m; bf16 autocast on CPU.
    No shift augmentation: one pixel is most of a centimetre here, and the probe must be exact."""
    bf16 = cpu_has_native_bf16()  # emulated bf16 (AVX2 only) trains ~15x slower than fp32
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    frames, targets = torch.from_numpy(frames_u8), torch.from_numpy(points)
    mean, std = targets.mean(0), targets.std(0).clamp_min(1e-4)
    net = ProbeNet(points.shape[1], width)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    net.train()
    for _ in progress(range(steps)):
        idx = torch.randint(len(frames), (batch,), generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = net(frames[idx])
        loss = (pred.float() - (targets[idx] - mean) / std).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return Probe(net.eval(), mean, std, list(names), tuple(frames_u8.shape[1:]))


def position_errors(probe: Probe, frames_u8: Tensor, true_points: np.ndarray) -> np.ndarray:
    """frames (..., H, W, 3) uint8 and their true positions (..., P, 2) m -> (..., P) distances in cm."""
    return np.linalg.norm(probe(frames_u8).numpy() - true_points, axis=-1) * 100


def load_or_train_probe(
    world_model,
    positions: Positions,
    names: Sequence[str],
    data: str | os.PathLike | None = None,
    steps: int = 1500,
    progress: Callable[[range], range] = iter,
) -> Probe:
    """The probe for a world model's task, trained on the real frames of `data` (default: the
    model's training file; of it, the checkpoint's training split, so held-out episodes stay unseen).
    Cached next to the data (`<data>.probe.pt`): every model trained on that file and split shares it."""
    from worldmodel.data.stats import dataset_fingerprint
    from worldmodel.data.windows import split_episodes

    data = data or world_model.provenance.get("dataset", {}).get("path")
    if not data or not Path(data).exists():
        raise FileNotFoundError(
            f"The position probe trains on real frames of the model's task, but its training data "
            f"{data!r} is not there; pass probe_data=PATH (a recording of the task)."
        )
    fingerprint = dataset_fingerprint(data)
    own_data = world_model.provenance.get("dataset", {}).get("sha256") == fingerprint["sha256"]
    wanted = {
        "dataset": fingerprint["sha256"],
        "names": list(names),
        "frame_shape": list(world_model.frame_shape),
        "split": world_model.spec.split if own_data else None,
        "steps": steps,
    }
    cache = Path(data).with_suffix(".probe.pt")
    if cache.exists():
        try:
            probe, provenance = Probe.load(cache)
        except ValueError as error:
            probe, provenance = None, {}
            logger.info("%s; training a new probe", error)
        if {k: provenance.get(k) for k in wanted} == wanted:
            return probe
        logger.info("%s was trained on other data, points or settings; training a new probe", cache)
    with RolloutReader(data) as reader:
        n = reader.num_episodes
    episodes = range(n)
    if own_data:
        split = world_model.spec.split
        episodes = split_episodes(n, split["val_fraction"], split["split_seed"])["train"]
    frames, points = labelled_frames(data, episodes, positions)
    logger.info("training the position probe on %d frames of %s", len(frames), data)
    probe = train_probe(frames, points, names, steps=steps, progress=progress)
    probe.save(cache, {**wanted, "frames": len(frames)})
    return probe
