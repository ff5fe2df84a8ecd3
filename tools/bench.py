"""Benchmarks: recording speed, HDF5 storage options and training-window loading.

    python tools/bench.py                       # all sections, a table each
    python tools/bench.py --only windows --json # machine-readable
    python tools/bench.py --task pusher --episodes 20

Numbers are for this machine only; compare runs from the same machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from envs import get_task
from envs.recording import PolicySpec, record_rollouts

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
        frames = sum(len(e.frames) for e in tqdm(record_rollouts(preset, [PolicySpec("expert")], episodes, out, workers=n),
                                                  total=episodes, desc=f"record workers={n}", leave=False))
        seconds = time.perf_counter() - start
        rows.append({"workers": n, "episodes": episodes, "frames": frames, "seconds": round(seconds, 2),
                     "frames_per_s": round(frames / seconds, 1), "episodes_per_s": round(episodes / seconds, 2)})
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
        rows.append({"option": name, "write_frames_per_s": round(n_frames / write_s), "bytes_per_frame": round(frame_bytes / n_frames),
                     "ratio_to_raw": round(frame_bytes / n_frames / raw, 3), "random_windows_per_s": round(windows / read_s)})
    return rows


def bench_windows(source: Path, workers: list[int], batches: int = 50, batch_size: int = 64) -> list[dict]:
    """Shuffled DataLoader throughput (K=4 context + F=1 target frames) with `workers` processes."""
    import torch
    from torch.utils.data import DataLoader

    from worldmodel.data.windows import RolloutWindows, collate_windows

    ds = RolloutWindows(source, context=4, target=1, split="all")
    rows = []
    for n in workers:
        loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=n, generator=torch.Generator().manual_seed(0), collate_fn=collate_windows,
                            persistent_workers=n > 0)
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


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  ".join(str(r[k]).rjust(w) for k, w in zip(keys, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="record,storage,windows", help="comma-separated sections")
    parser.add_argument("--task", default="reacher")
    parser.add_argument("--episodes", type=int, default=40, help="episodes recorded for every section")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sections = set(args.only.split(","))
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Every section needs a recording; the record section also times it with 1 worker.
        recorded = bench_recording(args.task, args.episodes, [1, 2] if "record" in sections else [2], tmp)
        if "record" in sections:
            results["record"] = recorded
        source = tmp / "record_2.h5"
        if "storage" in sections:
            results["storage"] = bench_storage(source, tmp)
        if "windows" in sections:
            results["windows"] = bench_windows(source, [0, 2])
    if args.json:
        print(json.dumps({"task": args.task, **results}, indent=2))
        return
    titles = {"record": f"recording {args.task} (expert, 64x64, frames include reset frames)",
              "storage": "HDF5 frame storage (write, size, random 5-frame window reads, 0 workers)",
              "windows": "training windows, K=4 + F=1, shuffled DataLoader"}
    for key, rows in results.items():
        print_table(titles[key], rows)


if __name__ == "__main__":
    main()
