"""Fidelity of imagined rollouts: from the first K real frames of held-out episodes, imagine under
the recorded actions and compare with what really happened (PSNR, SSIM, flicker per horizon)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from worldmodel.data.reader import RolloutReader
from worldmodel.data.stats import dataset_fingerprint, episode_fingerprints
from worldmodel.data.windows import split_episodes
from worldmodel.evaluation.metrics import flicker, psnr, ssim
from worldmodel.evaluation.probe import Positions, Probe, position_errors

logger = logging.getLogger(__name__)


def held_out_episodes(world_model, data: str | os.PathLike) -> tuple[list[int], str]:
    """The episodes of `data` a model may be evaluated on, and which rule chose them: the checkpoint's
    own validation split of its training file (recognised by file fingerprint); of any other file,
    every episode the model did not train on, recognised by the episode fingerprints the checkpoint
    keeps (a re-recording of the training data shares them). Refuses data of another task or frame
    shape, and a file holding training episodes only."""
    spec, dataset = world_model.spec, world_model.provenance.get("dataset", {})
    with RolloutReader(data) as reader:
        if reader.num_episodes == 0:
            raise ValueError(f"{data} holds no episodes; record some with tools/record_rollouts.py.")
        task, shape, n = reader.metadata["task"], list(reader.frame_shape), reader.num_episodes
    spec.check_data(data, task, shape, "evaluate on data of the model's task.")
    if dataset.get("sha256") == dataset_fingerprint(data)["sha256"]:
        return list(split_episodes(n, spec.split["val_fraction"], spec.split["split_seed"])["val"]), "the checkpoint's held-out split"
    if "train_episodes" not in dataset:
        logger.warning(
            "the checkpoint keeps no fingerprints of its training episodes (exported by older code): "
            "cannot check that %s holds none of them",
            data,
        )
        return list(range(n)), "all episodes (unchecked: the checkpoint keeps no training-episode fingerprints)"
    trained = set(dataset["train_episodes"])
    kept = [i for i, f in enumerate(episode_fingerprints(data)) if f not in trained]
    if not kept:
        raise ValueError(
            f"all {n} episodes of {data} are episodes the model trained on (the same seeds recorded again?); "
            "record held-out data with a seed training never used, e.g. python tools/record_rollouts.py "
            "task=reacher policy=mixture episodes=32 seed=7 task.episode_steps=60 out=data/reacher_val.h5"
        )
    if len(kept) < n:
        logger.warning("%s: %d of %d episodes are ones the model trained on; they are left out", data, n - len(kept), n)
        return kept, f"{len(kept)} of {n} episodes ({n - len(kept)} the model trained on left out)"
    return kept, "all episodes (none of them a training episode)"


PANELS = ("real", "imagined", "|difference|")


def label_strip(width: int, labels: Sequence[str], height: int = 14) -> np.ndarray:
    """(height, width, 3) uint8: each label centred in its equal share of the width, white on black."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(strip)
    share = width / len(labels)
    for i, label in enumerate(labels):
        draw.text(((i + 0.5) * share, height / 2), label, fill=(255, 255, 255), anchor="mm")
    return np.asarray(strip)


def side_by_side(real_u8: np.ndarray, imagined_u8: np.ndarray, scale: int = 2) -> np.ndarray:
    """(T, H, W, 3) x 2 -> (T, 14 + H*scale, 3*W*scale, 3): real | imagined | |difference|, each
    panel named in a strip above it."""
    diff = np.abs(real_u8.astype(np.int16) - imagined_u8.astype(np.int16)).astype(np.uint8)
    video = np.concatenate([real_u8, imagined_u8, diff], axis=2)
    video = video.repeat(scale, axis=1).repeat(scale, axis=2)
    strip = label_strip(video.shape[2], PANELS)
    return np.concatenate([np.broadcast_to(strip, (len(video), *strip.shape)), video], axis=1)


def rollout_fidelity(
    world_model,
    path: str | os.PathLike,
    episodes: Sequence[int],
    horizons: Sequence[int],
    max_episodes: int,
    video: str | os.PathLike | None = None,
    seed: int = 0,
    video_episodes: int = 4,
    probe: Probe | None = None,
    positions: Positions | None = None,
    first_frame: int | None = None,
    position_names: Sequence[str] = (),
    observe: Callable[[np.ndarray], np.ndarray] | None = None,
    render: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """PSNR (dB), SSIM and flicker at each horizon of imagined vs real frames, next to the
    copy-last-frame baseline, averaged over episodes.

    With a position `probe` and `positions` (recorded states -> true key positions, from the real
    simulator), also the error (cm) of the key positions the probe reads off imagined frames, next
    to the probe's floor (its error on the real frames) and copy-last, per key body:
    {"position_cm" | "position_floor_cm" | "copy_last_position_cm": {body: {h: mean}}}; for a model
    with a state track also "state_position_cm": the key positions of its imagined states (through
    `positions`), what its frames are drawn from; that one needs only `positions` (no probe); and
    with `positions`, "motion_cm": how far each body really moved since the last context frame
    (copy-last's error, in the simulator's own positions; ~0 for a body that never moves).
    position_names: the key bodies `positions` returns, in order (default: the probe's).
    observe: states (N, nq+nv) -> (N, D) the task's own observation vectors (`StateObserver`); for
    a model with a state track, "observation_error" and "copy_last_observation_error": {h: (D,) mean
    |imagined - real| per dimension} of the observation of imagined vs recorded states (copy-last:
    the last context state's observation held).
    render: states (N, nq+nv) -> (N, H, W, 3) uint8, the task's own rendering of each state; for a
    model with a state track, how well the frames follow the state apart from how well the state
    follows reality: "render_psnr" / "render_ssim", imagined frames vs the rendering of the imagined
    states; "render_floor_psnr" / "render_floor_ssim", recorded frames vs the rendering of the
    recorded states (what the comparison cannot resolve: a recorded frame shows the bodies one
    physics substep before its state); "rendered_state_psnr" / "rendered_state_ssim", the rendering
    of the imagined states vs the recorded frames (the state's error, in pixels).

    Horizon h is the h-th imagined frame; the first is frame `first_frame` of the episode (default
    K: right after the first K real frames; one value for models of different K scores them on the
    same frames, each from its own K real frames before it). Episodes are taken in order; the
    rollout length is the largest horizon that every chosen episode allows; `video` shows the first
    `video_episodes` stacked. Returns {metric: {h: mean}} for the asked horizons (keys psnr, ssim,
    flicker and copy_last_* of each) and "curves": every horizon 1..n.
    """
    k = world_model.context
    position_names = list(position_names or (probe.names if probe is not None else ()))
    if positions is not None and not position_names:
        raise ValueError("positions need position_names (the key bodies they return) or a probe that names them.")
    first = k if first_frame is None else int(first_frame)
    if first < k:
        raise ValueError(f"first_frame={first} leaves fewer real frames before it than the model's {k} context frames.")
    s = first - k  # the first context frame
    with RolloutReader(path) as reader:
        chosen = [int(e) for e in episodes if reader.lengths[e] + 1 > first][:max_episodes]
        if not chosen:
            raise ValueError(f"no held-out episode of {path} is longer than {first} frames (the first imagined frame's index).")
        n = min(max(horizons), min(int(reader.lengths[e]) + 1 - first for e in chosen))
        frames = torch.from_numpy(np.stack([reader.frames(e, s, first + n) for e in chosen]))
        actions = torch.from_numpy(np.stack([reader.steps("actions", e, s, first - 1 + n) for e in chosen]))
        states = None
        if world_model.state_shape is not None:  # the state track starts from the recorded state of the context frames
            states = torch.from_numpy(np.stack([reader.states(e, s, first) for e in chosen]))
            real_states = np.stack([reader.states(e, first - 1, first + n) for e in chosen]).astype(np.float64)  # (E, 1 + n, S)
        if positions is not None:
            true = np.stack(
                [
                    positions(reader.frames(e, first - 1, first + n, name="qpos"), reader.frames(e, first - 1, first + n, name="qvel"))
                    for e in chosen
                ]
            )  # from the last context frame: how far each body really moves since
            last_true, true = true[:, :1], true[:, 1:]
    out = world_model.imagine(
        frames[:, :k], actions[:, : k - 1], actions[:, k - 1 :], generator=torch.Generator().manual_seed(seed), context_states=states
    )
    real, previous_real = frames[:, k:], frames[:, k - 1 : -1]
    copy_last = frames[:, k - 1 : k].expand_as(real)
    previous_imagined = torch.cat([frames[:, k - 1 : k], out.frames[:, :-1]], dim=1)
    per_frame = {  # (episodes, n) each
        "psnr": psnr(out.frames, real).clamp_max(100),  # identical frames: cap the infinity
        "ssim": ssim(out.frames, real),
        "flicker": flicker(out.frames, real, previous_imagined, previous_real),
        "copy_last_psnr": psnr(copy_last, real).clamp_max(100),
        "copy_last_ssim": ssim(copy_last, real),
        "copy_last_flicker": flicker(copy_last, real, copy_last, previous_real),
    }
    used = [h for h in horizons if h <= n]
    result = {name: {h: float(v[:, h - 1].mean()) for h in used} for name, v in per_frame.items()}
    result |= {"horizons": used, "episodes": chosen, "curves": {name: v.mean(0).tolist() for name, v in per_frame.items()}}
    errors = {}  # (episodes, n, P) cm each
    if probe is not None:
        errors = {
            "position_cm": position_errors(probe, out.frames, true),
            "position_floor_cm": position_errors(probe, real, true),
            "copy_last_position_cm": position_errors(probe, copy_last, true),
        }
    if positions is not None:  # how far each body really moved since the last context frame: copy-last's error in positions
        errors["motion_cm"] = np.linalg.norm(true - last_true, axis=-1) * 100
    if positions is not None and out.states is not None:  # the state track's own error: its imagined qpos through the kinematics
        nq = world_model.spec.dynamics["nq"]
        imagined = out.states.numpy().astype(np.float64)
        flat = positions(imagined[..., :nq].reshape(-1, nq), imagined[..., nq:].reshape(-1, imagined.shape[-1] - nq))
        errors["state_position_cm"] = np.linalg.norm(flat.reshape(true.shape) - true, axis=-1) * 100
    if render is not None and out.states is not None:

        def rendered(states: np.ndarray) -> Tensor:
            return torch.from_numpy(render(states.reshape(-1, states.shape[-1])).reshape(*states.shape[:-1], *real.shape[2:]))

        of_imagined, of_recorded = rendered(out.states.numpy().astype(np.float64)), rendered(real_states[:, 1:])
        for name, (a, b) in {
            "render": (out.frames, of_imagined),
            "render_floor": (real, of_recorded),
            "rendered_state": (of_imagined, real),
        }.items():
            for metric, values in ((f"{name}_psnr", psnr(a, b).clamp_max(100)), (f"{name}_ssim", ssim(a, b))):
                result[metric] = {h: float(values[:, h - 1].mean()) for h in used}
                result["curves"][metric] = values.mean(0).tolist()
    if observe is not None and out.states is not None:

        def observed(states: np.ndarray) -> np.ndarray:
            return observe(states.reshape(-1, states.shape[-1])).reshape(*states.shape[:-1], -1)

        real_obs, imagined_obs = observed(real_states), observed(out.states.numpy().astype(np.float64))
        for key, err in (
            ("observation_error", np.abs(imagined_obs - real_obs[:, 1:])),
            ("copy_last_observation_error", np.abs(real_obs[:, :1] - real_obs[:, 1:])),
        ):
            result[key] = {h: err[:, h - 1].mean(0).tolist() for h in used}
    for key, err in errors.items():
        result[key] = {body: {h: float(err[:, h - 1, p].mean()) for h in used} for p, body in enumerate(position_names)}
        result["curves"][key] = {body: err[:, :, p].mean(0).tolist() for p, body in enumerate(position_names)}
    if video is not None:
        import imageio.v3 as iio

        video = Path(video)
        video.parent.mkdir(parents=True, exist_ok=True)
        clips = [side_by_side(real[i].numpy(), out.frames[i].numpy()) for i in range(min(video_episodes, len(chosen)))]
        iio.imwrite(video, np.concatenate(clips, axis=1), fps=10, codec="libx264", macro_block_size=1)
        result["video"] = str(video)
    return result
