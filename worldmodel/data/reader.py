"""Reading HDF5 rollout files: metadata, episodes and raw slices, with clear errors."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from worldmodel.data.format import (
    EPISODE_FIELDS,
    FORMAT_VERSION,
    FRAME_FIELDS,
    STEP_FIELDS,
    Episode,
    RolloutFormatError,
    decode_policy,
)
from worldmodel.data.lock import writer_alive


def _set_metadata_read_attempts(fapl: h5py.h5p.PropFAID, attempts: int) -> bool:
    """HDF5's H5Pset_metadata_read_attempts, which h5py does not wrap: through ctypes on the HDF5
    library h5py loaded; False where that library cannot be found."""
    libs = sorted(Path(h5py.__file__).parent.parent.joinpath("h5py.libs").glob("libhdf5-*")) or [ctypes.util.find_library("hdf5")]
    try:
        lib = ctypes.CDLL(str(libs[0]))
        lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        return lib.H5Pset_metadata_read_attempts(fapl.id, attempts) >= 0
    except (OSError, AttributeError, TypeError):
        return False


def _open_swmr(path: Path, retry: bool) -> h5py.File:
    """SWMR read. A metadata block that fails its checksum is re-read up to 100 times in SWMR mode
    (the writer may be mid-write); with no live writer (`retry` False) the file cannot change, so
    one read decides: a file cut short then fails at once instead of hanging for minutes."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    if not retry:
        _set_metadata_read_attempts(fapl, 1)
    return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl))


def open_rollout_file(path: str | os.PathLike) -> h5py.File:
    """Opens a rollout file read-only, also while it is being written or after its writer was killed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No rollout file at {path}. Record one with: python tools/record_rollouts.py task=reacher out={path}")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        if "already open for write" not in str(error):
            raise RolloutFormatError(f"{path} is not a readable HDF5 file ({error}); it may be truncated or corrupt.") from error
        # Being written, or its writer was killed: SWMR read sees every finished episode.
        # (Not tried first: on a damaged file SWMR read retries for a long time before failing.)
        f = _open_swmr(path, retry=writer_alive(path))
    version = f.attrs.get("format_version")
    version = version.item() if isinstance(version, np.generic) else version
    if version is None:
        f.close()
        raise RolloutFormatError(f"{path} is HDF5 but not a DiffusionWorld rollout file (no format_version attribute).")
    if type(version) is not int or version != FORMAT_VERSION:
        f.close()
        raise RolloutFormatError(
            f"{path} has format_version {version!r}; this code reads version {FORMAT_VERSION} (an integer). "
            "Re-record it, or use the DiffusionWorld release that wrote it."
        )
    missing = [n for n in (*FRAME_FIELDS, *STEP_FIELDS) if n not in f] + [
        f"episodes/{n}" for n in EPISODE_FIELDS if n not in f.get("episodes", {})
    ]
    if missing:
        f.close()
        raise RolloutFormatError(f"{path} lacks datasets {missing}; the file is damaged.")
    try:
        _check_not_truncated(f, path)
    except BaseException:
        f.close()
        raise
    return f


def listed_ends(episodes: h5py.Group) -> tuple[int, int]:
    """The end of the listed episodes' data in the per-frame and the per-step datasets; rows past
    them are an unfinished write."""
    n = len(episodes["length"])
    if not n:
        return 0, 0
    last = int(episodes["length"][n - 1])
    return int(episodes["frame_start"][n - 1]) + last + 1, int(episodes["step_start"][n - 1]) + last


def _check_not_truncated(f: h5py.File, path: Path) -> None:
    """Every stored chunk of the listed episodes lies inside the file.

    A file cut short (a partial copy, a full disk) whose writer flag is set opens in SWMR mode,
    which skips HDF5's end-of-file check: reads past the cut then return zeros (wrong statistics)
    or make the decompressor fail or hang. Chunks past the listed episodes are an unfinished
    write and are not checked."""
    size = os.path.getsize(path)

    def reach(dset: h5py.Dataset, rows: int) -> int:
        end = 0

        def visit(info) -> None:
            nonlocal end
            if info.chunk_offset[0] < rows:
                end = max(end, info.byte_offset + info.size)

        if dset.chunks is not None and hasattr(dset.id, "chunk_iter"):
            dset.id.chunk_iter(visit)
        return end

    advice = "(a copy cut short or a full disk). Copy or record it again."
    try:
        ep = f["episodes"]
        far = max(reach(ep[name], len(ep[name])) for name in EPISODE_FIELDS)
        if far <= size:
            frames_end, steps_end = listed_ends(ep)
            far = max([far] + [reach(f[name], frames_end) for name in FRAME_FIELDS] + [reach(f[name], steps_end) for name in STEP_FIELDS])
    except (OSError, RuntimeError) as error:  # its index lies past the end of the file
        raise RolloutFormatError(f"{path} is truncated or damaged: {error} {advice}") from error
    if far > size:
        raise RolloutFormatError(f"{path} is truncated: its episodes' data reaches byte {far:,}, the file ends at byte {size:,} {advice}")


class RolloutReader:
    """Read access to one rollout file.

    Episode bounds are loaded once (a few int64 per episode); frames and steps are read on
    demand, so memory stays small whatever the file size.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = open_rollout_file(self.path)
        self.metadata: dict[str, Any] = {k: json.loads(v) for k, v in self.file.attrs.items() if k != "format_version"}
        ep = self.file["episodes"]
        n = len(ep["length"])  # rows appear when complete: `length` sizes the index
        self.frame_start = ep["frame_start"][:n].astype(np.int64)
        self.step_start = ep["step_start"][:n].astype(np.int64)
        self.lengths = ep["length"][:n].astype(np.int64)
        self.seeds = ep["seed"][:n].astype(np.int64)
        self.policies = [decode_policy(p) for p in ep["policy"][:n]]
        self.goals = ep["goal"][:n] if "goal" in ep else None  # (E, G): a goal-based task's

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    @property
    def num_frames(self) -> int:
        return int((self.lengths + 1).sum())

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(self.file["frames"].shape[1:])

    def steps(self, name: str, episode: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Per-step array `name` (actions, rewards, ...) of steps [start, stop) of an episode."""
        self._check_episode(episode)
        base, T = int(self.step_start[episode]), int(self.lengths[episode])
        stop = T if stop is None else stop
        return self.file[name][base + start : base + stop]

    def frames(self, episode: int, start: int = 0, stop: int | None = None, name: str = "frames") -> np.ndarray:
        """Frames [start, stop) of an episode, (n, H, W, 3) uint8 (or qpos/qvel via `name`)."""
        self._check_episode(episode)
        base, T = int(self.frame_start[episode]), int(self.lengths[episode])
        stop = T + 1 if stop is None else stop
        return self.file[name][base + start : base + stop]

    def states(self, episode: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The simulator state [qpos, qvel] of frames [start, stop) of an episode, (n, nq+nv) float32."""
        return np.concatenate([self.frames(episode, start, stop, name=q) for q in ("qpos", "qvel")], -1).astype(np.float32)

    def _check_episode(self, i: int) -> None:
        if not 0 <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range: {self.path} has {self.num_episodes} episodes.")

    def episode(self, i: int) -> Episode:
        return Episode(
            **{name: self.frames(i, name=name) for name in FRAME_FIELDS},
            **{name: self.steps(name, i) for name in STEP_FIELDS},
            seed=int(self.seeds[i]),
            policy=self.policies[i],
            goal=None if self.goals is None else self.goals[i].copy(),
        )

    def check_actions(self, block: int = 65536) -> None:
        """Raises RolloutFormatError if any recorded action is NaN/inf or outside the action space.

        Streams the actions in blocks, so memory stays bounded.
        """
        low = np.asarray(self.metadata["action_low"], np.float32).reshape(-1)
        high = np.asarray(self.metadata["action_high"], np.float32).reshape(-1)
        actions = self.file["actions"]
        _, n = listed_ends(self.file["episodes"])
        for start in range(0, n, block):
            chunk = actions[start : min(start + block, n)]
            bad = ~np.isfinite(chunk).all(axis=1)
            if bad.any():
                step = start + int(np.argmax(bad))
                raise RolloutFormatError(
                    f"{self.path}: action at step {step} (episode {self.episode_of_step(step)}) is {chunk[step - start]}: NaN or inf. "
                    "Re-record the episode or drop it from the file."
                )
            out = ((chunk < low - 1e-6) | (chunk > high + 1e-6)).any(axis=1)
            if out.any():
                step = start + int(np.argmax(out))
                raise RolloutFormatError(
                    f"{self.path}: action at step {step} (episode {self.episode_of_step(step)}) is {chunk[step - start]}, "
                    f"outside the action space [{low}, {high}]. Clip actions to the space when recording."
                )

    def episode_of_step(self, step: int) -> int:
        return int(np.searchsorted(self.step_start, step, side="right") - 1)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> RolloutReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
