"""Crash-safe appending of episodes to an HDF5 rollout file.

The file is written in HDF5's single-writer/multiple-reader (SWMR) mode: HDF5 then orders its
metadata writes so that the file on disk is always consistent, and a writer killed at any moment
(even SIGKILL) leaves a file whose listed episodes are all intact. An episode becomes visible only
when its row is added to /episodes, after its data is flushed.

A killed writer leaves HDF5's "file open for writing" flag set: `RolloutReader` still opens it
(SWMR read), plain `h5py.File(path, "r")` does not until the file is repaired, which the next
append does by itself (or `repair(path)`).

One writer per file: a writer holds an exclusive lock on `<file>.lock` (flock, which the OS
drops when the process dies), so a second writer is refused while the first lives, and a file
left open for writing is repaired only once its writer is really gone.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from worldmodel.data.format import (
    FORMAT_VERSION,
    FRAME_FIELDS,
    POLICY_BYTES,
    STEP_FIELDS,
    Episode,
    RolloutFormatError,
    encode_policy,
)
from worldmodel.data.lock import lock_writer, unlock_writer
from worldmodel.data.reader import RolloutReader, listed_ends

logger = logging.getLogger(__name__)

# Measured on Reacher 64x64 frames (docs/data_format.md): gzip level 1 on 8-frame chunks
# stores a frame in ~1/18 of its raw size, writes far faster than the recorder produces
# frames, and a 5-frame window touches at most two chunks.
DEFAULT_COMPRESSION = "gzip"
DEFAULT_COMPRESSION_LEVEL = 1
DEFAULT_CHUNK_FRAMES = 8

# The fields checked before appending: data of another task, frame size or action space
# cannot share a file.
COMPAT_KEYS = ("task", "frame_shape", "action_shape", "action_low", "action_high")
# Checked too where the file has it: the recording settings (action repeat, episode length,
# camera, ...) the file's attributes describe for all its episodes.
OPTIONAL_COMPAT_KEYS = ("task_preset",)


# Free space kept beyond what a write needs: HDF5 allocates metadata and whole chunks, and a
# write that meets a full disk inside HDF5 cannot be undone cleanly (its superblock may already
# claim the new end of file), so the writer stops before that happens.
DISK_MARGIN = 16 << 20


class DiskFullError(OSError):
    """Not enough free disk space to write safely; nothing was written."""


def check_free_space(path: Path, need: int, kept: str) -> None:
    """Raises DiskFullError (errno ENOSPC) if the file system of `path` has less than `need` bytes free."""
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise DiskFullError(
            errno.ENOSPC,
            f"Only {free / 2**20:.1f} MiB free on the disk of {path}, a safe write needs "
            f"{need / 2**20:.1f} MiB. Stopped before writing: {kept}.",
        )


def _is_left_open(error: OSError) -> bool:
    return "already open for write" in str(error)


def _open_writable(path: Path, wait_s: float = 10.0) -> h5py.File:
    """Opens for appending, waiting up to `wait_s` while another process holds the file's lock
    (a reader such as the inspect tool); then a clear error."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return h5py.File(path, "a", libver="latest")
        except BlockingIOError as error:
            if time.monotonic() > deadline:
                raise RolloutFormatError(
                    f"{path} is locked by another process (a reader or writer) for over {wait_s:.0f} s; close it and retry."
                ) from error
            time.sleep(0.05)


class RolloutWriter:
    """Appends episodes to `path`, creating it if needed.

    metadata: plain-type attributes of the file. Must hold `task`, `frame_shape` (H, W, 3),
    `action_shape`, `action_low`, `action_high` (lists), `nq`, `nv`; each value is stored as a
    JSON string attribute.
    append: if False, an existing file is an error (nothing is overwritten).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        metadata: dict[str, Any],
        append: bool = False,
        compression: str | None = DEFAULT_COMPRESSION,
        compression_level: int | None = DEFAULT_COMPRESSION_LEVEL,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    ):
        self.path = Path(path)
        missing = [k for k in (*COMPAT_KEYS, "nq", "nv") if k not in metadata]
        if missing:
            raise ValueError(f"metadata lacks {missing}.")
        self.metadata = metadata
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = lock_writer(self.path)
        try:
            if self.path.exists():
                if not append:
                    raise FileExistsError(f"{self.path} exists. Pass append=true to add episodes to it, or choose another output path.")
                self._check_compatible()
            else:
                self._create(compression, compression_level, chunk_frames)
            self._file = self._open_for_append()
            self._file.swmr_mode = True
        except BaseException:
            unlock_writer(self.path, self._lock)
            raise

    # -- set-up -------------------------------------------------------------------------------
    def _create(self, compression, compression_level, chunk_frames) -> None:
        """Creates the empty file under a temporary name, then renames it: never half-made."""
        md = self.metadata
        h, w, c = md["frame_shape"]
        a = int(np.prod(md["action_shape"]))
        tmp = self.path.with_name(self.path.name + ".creating")
        frame_opts = dict(compression=compression, compression_opts=compression_level if compression == "gzip" else None)
        # Per-step arrays are tiny next to frames and stay uncompressed: an uncompressed chunk is
        # rewritten in place, while a compressed one that grows by an episode is reallocated, and
        # SWMR mode never reuses the space it leaves (that tripled the file size).
        rows = 1024
        with h5py.File(tmp, "w", libver="latest") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in md.items():
                f.attrs[key] = json.dumps(value)
            f.create_dataset("frames", (0, h, w, c), np.uint8, maxshape=(None, h, w, c), chunks=(chunk_frames, h, w, c), **frame_opts)
            for name, width in (("qpos", md["nq"]), ("qvel", md["nv"])):  # width 0: data without simulator state
                f.create_dataset(name, (0, width), np.float64, maxshape=(None, width), chunks=(rows, width) if width else True)
            f.create_dataset("actions", (0, a), np.float32, maxshape=(None, a), chunks=(rows, a))
            f.create_dataset("rewards", (0,), np.float32, maxshape=(None,), chunks=(rows,))
            for name in ("terminated", "truncated", "success"):
                f.create_dataset(name, (0,), bool, maxshape=(None,), chunks=(rows,))
            ep = f.create_group("episodes")
            for name in ("frame_start", "step_start", "length", "seed"):
                ep.create_dataset(name, (0,), np.int64, maxshape=(None,), chunks=(rows,))
            ep.create_dataset("policy", (0,), f"S{POLICY_BYTES}", maxshape=(None,), chunks=(rows,))
            if md.get("goal_shape"):  # SWMR appends cannot add datasets later: made with the file
                goal = tuple(md["goal_shape"])
                ep.create_dataset("goal", (0, *goal), np.float64, maxshape=(None, *goal), chunks=(rows, *goal))
        os.replace(tmp, self.path)

    def _check_compatible(self) -> None:
        """Refuses, before touching the file, to mix tasks, frame sizes or action spaces."""
        with RolloutReader(self.path) as reader:
            existing = reader.metadata
        keys = [*COMPAT_KEYS, *(k for k in OPTIONAL_COMPAT_KEYS if k in existing or k in self.metadata)]
        for key in keys:
            old, new = existing.get(key), self.metadata.get(key)
            if isinstance(old, dict) and isinstance(new, dict):  # a field newer code added (or older lacked) is no conflict
                shared = old.keys() & new.keys()
                old, new = {k: old[k] for k in shared}, {k: new[k] for k in shared}
            if json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
                if isinstance(old, dict) and isinstance(new, dict):
                    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
                    old, new = {k: old.get(k) for k in differ}, {k: new.get(k) for k in differ}
                raise RolloutFormatError(
                    f"Cannot append to {self.path}: its {key} is {old!r}, the new data's is {new!r}. "
                    "Record with the file's settings, or write to another file (out=...)."
                )

    def _open_for_append(self) -> h5py.File:
        try:
            f = _open_writable(self.path)
        except OSError as error:
            if not _is_left_open(error):
                raise RolloutFormatError(f"Cannot open {self.path} for appending: {error}") from error
            logger.warning("%s was left open by a writer that did not finish; repairing it.", self.path)
            _repair(self.path)
            f = _open_writable(self.path)
        # Drop any unfinished episode a failed writer left past the index.
        ep = f["episodes"]
        n = len(ep["length"])
        frames_end, steps_end = listed_ends(ep)
        for name in FRAME_FIELDS:
            f[name].resize(frames_end, axis=0)
        for name in STEP_FIELDS:
            f[name].resize(steps_end, axis=0)
        self._frames_end, self._steps_end, self._num_episodes = frames_end, steps_end, n
        return f

    # -- writing ------------------------------------------------------------------------------
    def add_episode(self, episode: Episode) -> None:
        """Appends one episode; it is on disk and visible to readers when this returns."""
        episode.validate()
        f = self._file
        expected = tuple(f["frames"].shape[1:])
        if episode.frames.shape[1:] != expected:
            raise RolloutFormatError(f"episode frames are {episode.frames.shape[1:]}, the file holds {expected}.")
        if episode.actions.shape[1:] != f["actions"].shape[1:]:
            raise RolloutFormatError(f"episode actions are {episode.actions.shape[1:]}, the file holds {f['actions'].shape[1:]}.")
        goal_rows = f["episodes"].get("goal")
        if goal_rows is not None and np.shape(episode.goal) != goal_rows.shape[1:]:
            raise RolloutFormatError(
                f"this file holds each episode's goal {goal_rows.shape[1:]} (a goal-based task); the episode's is "
                f"{None if episode.goal is None else np.shape(episode.goal)}."
            )
        need = sum(getattr(episode, name).nbytes for name in (*FRAME_FIELDS, *STEP_FIELDS)) + DISK_MARGIN
        check_free_space(
            self.path, need, f"{self._num_episodes} finished episodes are safe in {self.path}; free space and add more with append=true"
        )
        T = episode.length
        # Each episode's frames start on a fresh chunk, so a finished episode's compressed chunks
        # are never rewritten (see _create); the few rows between episodes are zero padding.
        chunk = f["frames"].chunks[0]
        frame_start = -(-self._frames_end // chunk) * chunk
        for name, start in [*((n, frame_start) for n in FRAME_FIELDS), *((n, self._steps_end) for n in STEP_FIELDS)]:
            values = getattr(episode, name)
            dset = f[name]
            dset.resize(start + len(values), axis=0)
            dset[start:] = values
            dset.flush()
        row = {
            "frame_start": frame_start,
            "step_start": self._steps_end,
            "length": T,
            "seed": int(episode.seed),
            "policy": np.bytes_(encode_policy(episode.policy)),
        }
        if goal_rows is not None:
            row["goal"] = np.asarray(episode.goal, np.float64)
        # `length` goes last: readers size the index by it, so a row shows only when complete.
        for name in sorted(row, key=lambda n: n == "length"):
            dset = f["episodes"][name]
            dset.resize(self._num_episodes + 1, axis=0)
            dset[self._num_episodes] = row[name]
            dset.flush()
        self._frames_end = frame_start + T + 1
        self._steps_end += T
        self._num_episodes += 1

    @property
    def num_episodes(self) -> int:
        return self._num_episodes

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()
        if self._lock is not None:
            unlock_writer(self.path, self._lock)
            self._lock = None

    def __enter__(self) -> RolloutWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def repair(path: str | os.PathLike) -> int:
    """Rewrites a file left open by a killed writer with all its finished episodes; returns their count.

    The copy is made next to the file and renamed over it only when complete, so nothing is lost
    if the repair itself is interrupted. Refused while a writer holds the file.
    """
    path = Path(path)
    fd = lock_writer(path)
    try:
        return _repair(path)
    finally:
        unlock_writer(path, fd)


def _repair(path: Path) -> int:
    """`repair` for a caller that holds the writer lock."""
    tmp = path.with_name(path.name + ".repairing")
    tmp.unlink(missing_ok=True)
    check_free_space(path, path.stat().st_size + DISK_MARGIN, f"{path} is unchanged; free space and retry")
    with RolloutReader(path) as reader:
        frames = reader.file["frames"]
        layout = dict(compression=frames.compression, compression_level=frames.compression_opts, chunk_frames=frames.chunks[0])
        with RolloutWriter(tmp, reader.metadata, **layout) as writer:
            for i in range(reader.num_episodes):
                writer.add_episode(reader.episode(i))
        count = reader.num_episodes
    os.replace(tmp, path)
    return count
