"""Benchmarks: recording speed, HDF5 storage options, training-window loading, training steps (bare,
and the real training loop), training memory against the data's size, DiffusionWorld-v0 stepping
next to the real MuJoCo task.

    python tools/bench.py                       # all sections, a table each
    python tools/bench.py only=[windows] json=true   # machine-readable
    python tools/bench.py task=pusher episodes=20
    python tools/bench.py only=[env] checkpoint=runs/reacher/model.pt
    python tools/bench.py only=[loop,env] device=cuda compile=true loop_batch=256 num_envs=[64,256,1024]   # a GPU

Numbers are for this machine only; compare runs from the same machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from envs import get_task
from envs.mujoco.recording import PolicySpec, record_rollouts
from worldmodel.checks import check_counts

SECTIONS = ("record", "storage", "windows", "train", "loop", "memory", "env")
ROOT = Path(__file__).resolve().parents[1]
STORAGE_OPTIONS = [  # (name, compression, level, chunk_frames)
    ("none, chunk 8", None, None, 8),
    ("lzf, chunk 8", "lzf", None, 8),
    ("gzip 1, chunk 1", "gzip", 1, 1),
    ("gzip 1, chunk 8", "gzip", 1, 8),
    ("gzip 1, chunk 32", "gzip", 1, 32),
    ("gzip 4, chunk 8", "gzip", 4, 8),
    ("gzip 6, chunk 8", "gzip", 6, 8),
    ("gzip 9, chunk 8", "gzip", 9, 8),
]


def bench_recording(task: str, episodes: int, workers: list[int], tmp: Path) -> list[dict]:
    rows = []
    preset = get_task(task)
    for n in workers:
        out = tmp / f"record_{n}.h5"
        start = time.perf_counter()
        frames = sum(
            len(e.frames)
            for e in tqdm(
                record_rollouts(preset, [PolicySpec("expert")], episodes, out, workers=n),
                total=episodes,
                desc=f"record workers={n}",
                leave=False,
            )
        )
        seconds = time.perf_counter() - start
        rows.append(
            {
                "workers": n,
                "episodes": episodes,
                "frames": frames,
                "seconds": round(seconds, 2),
                "frames_per_s": round(frames / seconds, 1),
                "episodes_per_s": round(episodes / seconds, 2),
            }
        )
    return rows


def bench_storage(source: Path, tmp: Path, windows: int = 2000) -> list[dict]:
    """Rewrites `source`'s episodes under each storage option: write speed, size, random window reads."""
    from worldmodel.data import RolloutReader, RolloutWriter
    from worldmodel.data.windows import RolloutWindows

    with RolloutReader(source) as reader:
        episodes = [reader.episode(i) for i in range(reader.num_episodes)]
        metadata = reader.metadata
    n_frames = sum(len(e.frames) for e in episodes)
    raw = episodes[0].frames[0].nbytes
    rows = []
    for name, compression, level, chunk in tqdm(STORAGE_OPTIONS, desc="storage options", leave=False):
        path = tmp / f"storage_{compression}_{level}_{chunk}.h5"
        start = time.perf_counter()
        with RolloutWriter(path, metadata, compression=compression, compression_level=level, chunk_frames=chunk) as w:
            for e in episodes:
                w.add_episode(e)
        write_s = time.perf_counter() - start
        with h5py.File(path, "r") as f:
            frame_bytes = f["frames"].id.get_storage_size()
        ds = RolloutWindows(path, context=4, target=1, split="all")
        order = np.random.default_rng(0).integers(len(ds), size=windows)
        start = time.perf_counter()
        for i in order:
            ds[int(i)]
        read_s = time.perf_counter() - start
        rows.append(
            {
                "option": name,
                "write_frames_per_s": round(n_frames / write_s),
                "bytes_per_frame": round(frame_bytes / n_frames),
                "ratio_to_raw": round(frame_bytes / n_frames / raw, 3),
                "random_windows_per_s": round(windows / read_s),
            }
        )
    return rows


def bench_windows(source: Path, workers: list[int], batches: int = 50, batch_size: int = 64) -> list[dict]:
    """Shuffled DataLoader throughput (K=4 context + F=1 target frames) with `workers` processes."""
    import torch
    from torch.utils.data import DataLoader

    from worldmodel.data.windows import RolloutWindows, collate_windows

    ds = RolloutWindows(source, context=4, target=1, split="all")
    rows = []
    for n in workers:
        loader = DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=True,
            num_workers=n,
            generator=torch.Generator().manual_seed(0),
            collate_fn=collate_windows,
            persistent_workers=n > 0,
        )
        it = iter(loader)
        next(it)  # worker start-up is not throughput
        start = time.perf_counter()
        for _ in range(batches):
            try:
                next(it)
            except StopIteration:
                it = iter(loader)
                next(it)
        seconds = time.perf_counter() - start
        rows.append({"num_workers": n, "batch_size": batch_size, "windows_per_s": round(batches * batch_size / seconds)})
    return rows


def bench_training(batch_size: int = 16, steps: int = 3, size: int = 64) -> list[dict]:
    """Denoiser + reward head training steps/s on random windows (K=4 + F=1), fp32 vs bf16 autocast.

    Model sizes from configs/model/; data loading is not included (see the windows section).
    """
    import torch
    from omegaconf import OmegaConf

    from worldmodel.diffusion import EDM
    from worldmodel.models import build_networks
    from worldmodel.training.losses import WindowLoss, WindowLossConfig

    space = {"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0], "shape": [2]}
    g = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.randint(0, 255, (batch_size, 5, size, size, 3), dtype=torch.uint8, generator=g),
        "actions": torch.rand(batch_size, 4, 2, generator=g) * 2 - 1,
        "rewards": torch.randn(batch_size, 4, generator=g),
        "terminated": torch.zeros(batch_size, 4, dtype=torch.bool),
    }
    rows = []
    for arch in ("framestack", "spacetime"):
        model_cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / f"configs/model/{arch}.yaml"))
        denoiser = {k: v for k, v in model_cfg.items() if k != "reward_channels"}
        loss = WindowLoss(*build_networks(denoiser, {"channels": model_cfg["reward_channels"]}, space, 4, 1), EDM(), WindowLossConfig(4, 1))
        optimizer = torch.optim.AdamW(loss.parameters(), lr=1e-4)
        params = sum(p.numel() for p in loss.denoiser.parameters())
        for precision in ("fp32", "bf16"):
            times = []
            for _ in range(steps + 1):  # the first step warms up
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    losses = loss(batch, g)
                losses["loss"].backward()
                optimizer.step()
                optimizer.zero_grad()
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "model": arch,
                    "params_M": round(params / 1e6, 2),
                    "precision": precision,
                    "samples_per_s": round(batch_size / float(np.median(times[1:])), 1),
                }
            )
    return rows


def bench_loop(source: Path, tmp: Path, device: str, compile: bool, batch_size: int, steps: int) -> list[dict]:
    """The real training loop (tools/train.py in its own process, configs/train.yaml's default model
    and state track) on `source` for `steps` steps: samples/s after the first step, which pays for
    compiling and warm-up and is reported apart (the trainer's speed.json)."""
    run = tmp / f"loop_{device}_{compile}_{batch_size}"
    args = [
        f"data={source}",
        f"run_dir={run}",
        f"steps={steps}",
        f"batch_size={batch_size}",
        "val_every=0",
        f"save_every={steps}",
        f"compile={compile}",
        f"device={'cpu' if device == 'cpu' else 'auto'}",
        "dynamics.steps=50",
        "start_bank_size=4",
    ]
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"training for the loop bench failed: {result.stderr[-2000:]}")
    speed = json.loads((run / "speed.json").read_text())
    return [
        {
            "device": device,
            "compile": compile,
            "batch_size": batch_size,
            "steps": speed["steps"],
            "samples_per_s": speed["samples_per_s"],
            "first_step_s": speed["first_step_s"],
        }
    ]


def bench_memory(task: str, episodes: int, tmp: Path, steps: int = 20) -> list[dict]:
    """Peak resident memory of a short training run (tools/train.py in its own process: the default
    model, `steps` steps of batch 16) on a recording of `episodes` random episodes and on one 4x
    larger. Windows are read from the file as batches need them, so it should not grow with the data."""
    rows = []
    for n in (episodes, 4 * episodes):
        data = tmp / f"memory_{n}.h5"
        for _ in tqdm(
            record_rollouts(get_task(task), [PolicySpec("random")], n, data, workers=2), total=n, desc=f"record {n}", leave=False
        ):
            pass
        args = [
            f"data={data}",
            f"run_dir={tmp / f'memory_{n}'}",
            f"steps={steps}",
            "val_every=0",
            f"save_every={steps}",
            "dynamics.steps=50",
            "start_bank_size=4",
        ]
        start = time.perf_counter()
        with open(tmp / f"memory_{n}.log", "w") as log:
            child = subprocess.Popen([sys.executable, str(ROOT / "tools" / "train.py"), *args], cwd=ROOT, stdout=log, stderr=log)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest of all children so far
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise RuntimeError(f"training for the memory bench failed: {(tmp / f'memory_{n}.log').read_text()[-2000:]}")
        peak = usage.ru_maxrss  # KiB on Linux
        rows.append(
            {
                "episodes": n,
                "file_mb": round(data.stat().st_size / 2**20, 1),
                "train_steps": steps,
                "peak_rss_mb": round(peak / 1024, 1),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    return rows


def env_checkpoint(task: str, tmp: Path) -> Path:
    """A default-config model (configs/train.yaml) trained for one step on a small fresh recording:
    the real checkpoint path, and stepping speed does not depend on how well the weights are trained."""
    from hydra import compose
    from omegaconf import OmegaConf

    from worldmodel.training.trainer import train

    data = tmp / "env_bench.h5"
    for _ in record_rollouts(get_task(task, episode_steps=12), [PolicySpec("random")], 4, data):
        pass
    # Inside this hydra app, compose reads configs/ as the app does.
    cfg = compose(
        "train",
        overrides=[
            f"data={data}",
            f"run_dir={tmp / 'env_bench'}",
            "steps=1",
            "batch_size=2",
            "val_every=0",
            "mixed_precision=no",
            "device=cpu",
            "start_bank_size=16",
            "dynamics.steps=10",
        ],
    )
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("task", None)
    plain["expect"] = {}
    return train(plain)


def fastest_round(timed_round: Callable[[], tuple[float, int]], rounds: int) -> tuple[float, int]:
    """The (seconds, world-steps) of the round with the most world-steps per second, of `rounds` runs of `timed_round`."""
    return max((timed_round() for _ in range(rounds)), key=lambda t: t[1] / t[0])


def bench_env(
    checkpoint: Path, task: str, device: str, num_envs: list[int], sampler_steps: int | None = None, compile: bool = False, rounds: int = 1
) -> list[dict]:
    """DiffusionWorld-v0 steps/s (single env; native vector env at each N) vs the real task's step+render.
    sampler_steps: Euler steps per frame (None: the checkpoint's); compile: torch.compile the denoiser
    (its compile time, paid by the first steps of each batch size, is left out and reported); rounds:
    each env is timed this many times and its fastest round reported (on a shared machine). On CUDA
    each vector env's peak GPU memory per world is reported too."""
    import gymnasium as gym
    import torch

    import envs

    real = envs.make_task_env(task)
    real.reset(seed=0)
    real.action_space.seed(0)
    steps = 300
    start = time.perf_counter()
    for _ in range(steps):
        if any(real.step(real.action_space.sample())[2:4]):
            real.reset()
    real_rate = steps / (time.perf_counter() - start)
    real.close()
    rows = []

    def row(name: str, n: int, seconds: float, steps: int, world_steps: int) -> dict:
        rate = world_steps / seconds
        return {
            "env": name,
            "num_envs": n,
            "ms_per_step": round(1000 * seconds / steps, 1),
            "steps_per_s": round(rate, 1),
            "vs_mujoco": round(rate / real_rate, 3),
        }

    # Only imagined steps count: the vector env steps a resetting world too (one batch shape) but drops its output.
    kwargs = {"checkpoint": str(checkpoint), "sampler_steps": sampler_steps, "device": device, "compile": compile}
    env = gym.make("DiffusionWorld-v0", **kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(3):  # warm-up: allocator, oneDNN kernel selection, compiling
        env.step(env.action_space.sample())
    warm_up_s = time.perf_counter() - start
    steps = 20

    def single_round() -> tuple[float, int]:
        seconds = 0.0
        for _ in range(steps):
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            seconds += time.perf_counter() - start
            if terminated or truncated:
                env.reset()
        return seconds, steps

    rows.append(row("DiffusionWorld-v0", 1, *fastest_round(single_round, rounds), steps) | {"warm_up_s": round(warm_up_s, 1)})
    cuda = device != "cpu" and torch.cuda.is_available()
    for n in tqdm(num_envs, desc="vector env", leave=False):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        vec = gym.make_vec("DiffusionWorld-v0", num_envs=n, **kwargs)
        vec.reset(seed=0)
        vec.action_space.seed(0)
        start = time.perf_counter()
        vec.step(vec.action_space.sample())
        warm_up_s = time.perf_counter() - start
        reps = max(2, min(20, 64 // n))

        def vector_round() -> tuple[float, int]:
            world_steps, start = 0, time.perf_counter()
            for _ in range(reps):
                world_steps += int(vec.step(vec.action_space.sample())[4].get("_termination_prob", np.zeros(0)).sum())
            return time.perf_counter() - start, world_steps

        seconds, world_steps = fastest_round(vector_round, rounds)
        rows.append(
            row("DiffusionWorld-v0 vector", n, seconds, reps, world_steps)
            | {"warm_up_s": round(warm_up_s, 1)}
            | ({"gpu_mb_per_world": round(torch.cuda.max_memory_allocated() / 2**20 / n, 1)} if cuda else {})
        )
        vec.close()
    rows.append(
        {
            "env": f"MuJoCo {task} step+render",
            "num_envs": 1,
            "ms_per_step": round(1000 / real_rate, 2),
            "steps_per_s": round(real_rate, 1),
            "vs_mujoco": 1.0,
            "warm_up_s": 0.0,
        }
    )
    if cuda:  # GPU memory per world: the peak of each vector env (weights included) over its worlds
        rows = [r | {"gpu_mb_per_world": r.get("gpu_mb_per_world", "-")} for r in rows]
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  ".join(str(r[k]).rjust(w) for k, w in zip(keys, widths)))


@hydra.main(config_path="../configs", config_name="bench", version_base=None)
def main(cfg: DictConfig) -> None:
    check_counts(cfg, episodes=1, env_rounds=1, loop_batch=1, loop_steps=2)
    unknown = set(cfg.only) - set(SECTIONS)
    if unknown:
        raise ValueError(f"Unknown bench sections {sorted(unknown)}; choose from {list(SECTIONS)}.")
    sections = set(cfg.only)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The data sections need a recording; the record section also times it with 1 worker.
        if sections & {"record", "storage", "windows", "loop"}:
            recorded = bench_recording(cfg.task, cfg.episodes, [1, 2] if "record" in sections else [2], tmp)
        if "record" in sections:
            results["record"] = recorded
        source = tmp / "record_2.h5"
        if "storage" in sections:
            results["storage"] = bench_storage(source, tmp)
        if "windows" in sections:
            results["windows"] = bench_windows(source, [0, 2])
        if "env" in sections:
            checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else env_checkpoint(cfg.task, tmp)
            results["env"] = bench_env(checkpoint, cfg.task, cfg.device, list(cfg.num_envs), cfg.sampler_steps, cfg.compile, cfg.env_rounds)
        if "loop" in sections:
            results["loop"] = bench_loop(source, tmp, cfg.device, cfg.compile, cfg.loop_batch, cfg.loop_steps)
        if "memory" in sections:
            results["memory"] = bench_memory(cfg.task, cfg.episodes, tmp)
    if "train" in sections:
        results["train"] = bench_training()
    if cfg.json:
        print(json.dumps({"task": cfg.task, **results}, indent=2))
        return
    titles = {
        "record": f"recording {cfg.task} (expert, 64x64, frames include reset frames)",
        "storage": "HDF5 frame storage (write, size, random 5-frame window reads, 0 workers)",
        "windows": "training windows, K=4 + F=1, shuffled DataLoader",
        "train": "training step (denoiser + reward head, AdamW), 64x64, K=4 + F=1, batch 16",
        "loop": f"the training loop (tools/train.py's, default config, {cfg.task} expert episodes), {cfg.device}",
        "memory": "training's peak resident memory (tools/train.py, default model, batch 16) against the data's size",
        "env": f"DiffusionWorld-v0 (Euler steps: {cfg.sampler_steps or 'the checkpoint sampler'}, bf16 autocast on CPU"
        f"{', compiled' if cfg.compile else ''}) vs real MuJoCo {cfg.task} step+render, 64x64, {cfg.device}",
    }
    for key, rows in results.items():
        print_table(titles[key], rows)


if __name__ == "__main__":
    main()
