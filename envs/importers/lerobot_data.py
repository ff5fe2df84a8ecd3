"""LeRobot dataset directories (codebase v2.x and v3.0, local: no hub access) into the rollout format.

A LeRobot dataset keeps one row per frame in parquet tables under data/ (`episode_index`,
`frame_index`, `timestamp`, `action`, optionally `observation.state`, `next.reward`, `next.done`,
`next.success`) and camera streams as mp4 videos (`dtype: video`: one file per episode in v2.x,
episodes concatenated in v3.0, located through meta/episodes/) or as images in the table
(`dtype: image`). Row t holds the observation at t and the action taken there, so an episode of
T rows becomes T frames and the T-1 steps between them; `observation.state` is stored as qpos
(no qvel). Tables are read with pyarrow and videos decoded with PyAV.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from envs.importers.common import ImportedData, imported_metadata, resize_frames
from worldmodel.data import Episode
from worldmodel.data.format import RolloutFormatError

VERSIONS = ("v2.0", "v2.1", "v3.0")


def _modules():
    try:
        import av
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError("importing LeRobot datasets needs pyarrow and PyAV: pip install pyarrow av.") from error
    return pq, av


def read_info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: it has no meta/info.json.")
    info = json.loads(path.read_text())
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise RolloutFormatError(
            f"{root}: LeRobot codebase_version {version!r} is not supported ({list(VERSIONS)}); convert it with "
            "LeRobot's own conversion scripts first."
        )
    return info


def camera_key(info: dict[str, Any], key: str | None) -> str:
    """The image feature to take frames from: `key`, or the only/first image or video feature."""
    cameras = [name for name, feature in info["features"].items() if feature.get("dtype") in ("video", "image")]
    if not cameras:
        raise RolloutFormatError("the dataset has no image or video feature to take frames from.")
    if key is None:
        return cameras[0]
    if key not in cameras:
        raise ValueError(f"camera={key!r} is not an image or video feature of the dataset; it has {cameras}.")
    return key


def import_lerobot(
    root: str | Path, camera: str | None = None, frame_size: tuple[int, int] = (64, 64), task: str | None = None
) -> ImportedData:
    """The episodes of a LeRobot dataset directory as rollout-format episodes (see the module doc)."""
    pq, _ = _modules()
    root = Path(root)
    info = read_info(root)
    key = camera_key(info, camera)
    files = sorted((root / "data").glob("**/*.parquet"))
    if not files:
        raise RolloutFormatError(f"{root}/data holds no parquet table.")
    table = _columns(pq, files)
    for needed in ("episode_index", "frame_index", "action"):
        if needed not in table:
            raise RolloutFormatError(f"{root}: the data tables lack the {needed!r} column.")
    actions = np.asarray(table["action"], np.float32).reshape(len(table["action"]), -1)
    state = table.get("observation.state")
    nq = 0 if state is None else np.asarray(state[0]).size
    metadata = imported_metadata(
        task or root.name,
        frame_size,
        actions,
        nq,
        0,
        {"lerobot": str(root), "codebase_version": info["codebase_version"], "camera": key, "fps": info.get("fps")},
    )
    episodes = np.unique(np.asarray(table["episode_index"]))
    return ImportedData(metadata, _episodes(root, info, key, table, episodes, frame_size), len(episodes))


def _columns(pq, files: list[Path]) -> dict[str, list]:
    columns: dict[str, list] = {}
    for path in files:
        for name, values in pq.read_table(path).to_pydict().items():
            columns.setdefault(name, []).extend(values)
    return columns


def _episodes(root: Path, info: dict, key: str, table: dict[str, list], episodes: np.ndarray, frame_size) -> Iterator[Episode]:
    index = np.asarray(table["episode_index"])
    order = np.lexsort((np.asarray(table["frame_index"]), index))
    video = _VideoFrames(root, info, key, frame_size) if info["features"][key]["dtype"] == "video" else None
    for episode in episodes:
        rows = order[index[order] == episode]
        if len(rows) < 2:
            continue  # one frame has no step
        if video is not None:
            frames = video.episode(int(episode), np.asarray(table["timestamp"], float)[rows])
        else:
            frames = resize_frames(np.stack([_decode_image(table[key][r]) for r in rows]), frame_size)
        yield _episode(table, rows, frames, int(episode))


def _episode(table: dict[str, list], rows: np.ndarray, frames: np.ndarray, episode: int) -> Episode:
    steps = len(rows) - 1

    def column(name: str, dtype, default) -> np.ndarray:
        if name not in table:
            return np.full(steps, default, dtype)
        return np.asarray([table[name][r] for r in rows[:-1]], dtype).reshape(steps)

    state = table.get("observation.state")
    qpos = np.zeros((len(rows), 0)) if state is None else np.asarray([state[r] for r in rows], np.float64)
    return Episode(
        frames=frames,
        actions=np.asarray([table["action"][r] for r in rows[:-1]], np.float32).reshape(steps, -1),
        rewards=column("next.reward", np.float32, 0.0),
        terminated=column("next.done", bool, False),
        truncated=np.arange(steps) == steps - 1,
        success=column("next.success", bool, False),
        qpos=qpos,
        qvel=np.zeros((len(rows), 0)),
        seed=episode,
        policy={"name": "lerobot"},
    )


def _decode_image(cell: Any) -> np.ndarray:
    import imageio.v3 as iio

    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if data is None:
        raise RolloutFormatError("an image cell holds no bytes (images stored as external paths are not supported).")
    return np.asarray(iio.imread(io.BytesIO(data)))[..., :3]


class _VideoFrames:
    """Decodes each mp4 once and hands out an episode's frames by timestamp."""

    def __init__(self, root: Path, info: dict, key: str, frame_size):
        _, self.av = _modules()
        self.root, self.info, self.key, self.frame_size = root, info, key, frame_size
        self.fps = float(info.get("fps") or info["features"][key].get("info", {}).get("video.fps", 30))
        self.locations = self._v3_locations() if info["codebase_version"] == "v3.0" else None
        self._cache: tuple[Path, np.ndarray, np.ndarray] | None = None

    def _v3_locations(self) -> dict[int, tuple[Path, float]]:
        pq, _ = _modules()
        files = sorted((self.root / "meta" / "episodes").glob("**/*.parquet"))
        if not files:
            raise RolloutFormatError(f"{self.root}: a v3.0 dataset needs meta/episodes/*.parquet to locate its videos.")
        meta = _columns(pq, files)
        prefix = f"videos/{self.key}/"
        out = {}
        for i, episode in enumerate(meta["episode_index"]):
            path = self.info["video_path"].format(
                video_key=self.key, chunk_index=meta[prefix + "chunk_index"][i], file_index=meta[prefix + "file_index"][i]
            )
            out[int(episode)] = (self.root / path, float(meta[prefix + "from_timestamp"][i]))
        return out

    def _location(self, episode: int) -> tuple[Path, float]:
        if self.locations is not None:
            if episode not in self.locations:
                raise RolloutFormatError(f"episode {episode} is not listed in meta/episodes.")
            return self.locations[episode]
        chunk = episode // int(self.info.get("chunks_size", 1000))
        return self.root / self.info["video_path"].format(episode_chunk=chunk, video_key=self.key, episode_index=episode), 0.0

    def _decode(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0] != path:
            if not path.is_file():
                raise FileNotFoundError(f"video {path} is missing.")
            with self.av.open(str(path)) as container:
                decoded = [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
            times = np.asarray([t for t, _ in decoded], float)
            self._cache = (path, times, resize_frames(np.stack([f for _, f in decoded]), self.frame_size))
        return self._cache[1], self._cache[2]

    def episode(self, episode: int, timestamps: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) frames of the rows at `timestamps` (s, from the episode's start)."""
        path, start = self._location(episode)
        times, frames = self._decode(path)
        nearest = np.abs(times[None, :] - (start + timestamps)[:, None]).argmin(1)
        gap = np.abs(times[nearest] - start - timestamps).max()
        if gap > 0.5 / self.fps:
            raise RolloutFormatError(
                f"episode {episode}: {path.name} has no frame within half a frame of a row's timestamp (off by {gap:.3f} s)."
            )
        return frames[nearest]
