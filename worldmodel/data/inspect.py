"""Summarise a rollout file, and write one episode as a video (tools/inspect_data.py runs them)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from worldmodel.data.format import policy_label
from worldmodel.data.reader import RolloutReader


def summarize(reader: RolloutReader) -> str:
    """A plain-text report: file facts, then episodes, steps, return and success per policy."""
    md = reader.metadata
    size = os.path.getsize(reader.path)
    lines = [
        f"file          {reader.path} ({size / 2**20:.1f} MiB, {size / max(reader.num_frames, 1):.0f} bytes/frame on disk)",
        f"task          {md.get('task')} ({md.get('env_id')}), frames {'x'.join(map(str, reader.frame_shape))} uint8",
        f"actions       shape {md.get('action_shape')}, low {md.get('action_low')}, high {md.get('action_high')}",
        f"episodes      {reader.num_episodes}, steps {int(reader.lengths.sum())}, frames {reader.num_frames}",
    ]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, policy in enumerate(reader.policies):
        groups[policy_label(policy)].append(i)
    rewards = reader.file["rewards"]
    success = reader.file["success"]
    header = f"{'policy':<28}{'episodes':>9}{'mean len':>10}{'return mean':>13}{'return std':>12}{'success':>9}"
    lines += ["", header, "-" * len(header)]
    for label in sorted(groups):
        episodes = groups[label]
        returns, final_success = [], []
        for e in episodes:  # per episode: memory stays bounded on large files
            s, T = int(reader.step_start[e]), int(reader.lengths[e])
            returns.append(float(rewards[s : s + T].sum()))
            final_success.append(bool(success[s + T - 1]))
        lines.append(
            f"{label:<28}{len(episodes):>9}{reader.lengths[episodes].mean():>10.1f}"
            f"{np.mean(returns):>13.2f}{np.std(returns):>12.2f}{np.mean(final_success):>9.2f}"
        )
    lines.append("(success: the task's success test holds at an episode's final step)")
    return "\n".join(lines)


def write_video(reader: RolloutReader, episode: int, path: str | os.PathLike, scale: int = 4, fps: int = 20) -> Path:
    """Writes one episode's frames to mp4 or gif (by suffix), upscaled `scale` times (nearest)."""
    import imageio.v3 as iio

    frames = reader.frames(episode)
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1)
    return path
