import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import record, run_tool
from envs import make_task_env
from envs.mujoco.recording import PolicySpec, episode_plan
from worldmodel.data import FORMAT_VERSION, RolloutFormatError, RolloutReader
from worldmodel.data.format import FRAME_FIELDS, STEP_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_file_layout_is_readable_with_plain_h5py(reacher_file):
    with h5py.File(reacher_file, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION
        lengths = f["episodes/length"][:]
        assert len(lengths) == 6 and (lengths == 12).all()
        s = f["episodes/frame_start"][2]
        frames = f["frames"][s : s + lengths[2] + 1]
        assert frames.shape == (13, 64, 64, 3) and frames.dtype == np.uint8
        assert f["actions"].shape == (6 * 12, 2) and f["actions"].dtype == np.float32
        starts = f["episodes/frame_start"][:]
        assert (starts % f["frames"].chunks[0] == 0).all(), "episodes start on a chunk boundary"
        assert f["qpos"].shape == (starts[-1] + 13, 4) and f["frames"].compression == "gzip"
        for name in ("rewards", "terminated", "truncated", "success"):
            assert f[name].shape == (72,)
        assert f["truncated"][11] and not f["truncated"][10]


def test_first_frame_is_the_reset_frame_of_the_stored_seed(reacher_file):
    with RolloutReader(reacher_file) as reader:
        episode = reader.episode(1)
        assert reader.metadata["task"] == "reacher" and reader.metadata["frame_shape"] == [64, 64, 3]
        assert "mujoco" in reader.metadata["versions"]
    env = make_task_env("reacher", episode_steps=12)
    frame, info = env.reset(seed=episode.seed)
    assert np.array_equal(frame, episode.frames[0])
    assert np.allclose(info["qpos"], episode.qpos[0])
    # replaying the stored actions reproduces the stored frames: the file is a faithful record
    for t, action in enumerate(episode.actions):
        frame, reward, *_ = env.step(action)
        assert np.array_equal(frame, episode.frames[t + 1])
        assert reward == pytest.approx(episode.rewards[t], abs=1e-5)


def read_all(path):
    with RolloutReader(path) as reader:
        return [reader.episode(i) for i in range(reader.num_episodes)]


def assert_same_episodes(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for name in (*FRAME_FIELDS, *STEP_FIELDS):
            assert np.array_equal(getattr(x, name), getattr(y, name)), name
        assert (x.seed, x.policy) == (y.seed, y.policy)


def test_same_seed_gives_identical_data_with_any_worker_count(tmp_path, reacher_file):
    again = record(tmp_path / "again.h5", episodes=6)
    parallel = record(tmp_path / "parallel.h5", episodes=6, workers=2)
    assert_same_episodes(read_all(reacher_file), read_all(again))
    assert_same_episodes(read_all(reacher_file), read_all(parallel))
    other = read_all(record(tmp_path / "other.h5", episodes=2, seed=1))
    assert not np.array_equal(other[0].frames, read_all(reacher_file)[0].frames)


def test_policy_mixture_follows_its_weights():
    plan = episode_plan(0, 0, 400, [PolicySpec("expert", weight=3.0), PolicySpec("random", weight=1.0)])
    share = np.mean([p for _, p in plan] == np.zeros(400))
    assert 0.68 < share < 0.82
    assert len({s for s, _ in plan}) == 400


def test_append_continues_the_file(tmp_path):
    path = record(tmp_path / "r.h5", episodes=2)
    before = read_all(path)
    record(path, episodes=3, append=True)
    after = read_all(path)
    assert len(after) == 5
    assert_same_episodes(before, after[:2])
    assert len({e.seed for e in after}) == 5, "appending with the same seed continues the sequence"


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(task="pusher"), "task"),
        (dict(frame_size=(32, 32)), "frame_shape"),
        (dict(action_repeat=2), "task_preset"),
        (dict(episode_steps=7), "task_preset"),
    ],
)
def test_append_refuses_incompatible_data_and_keeps_the_file(tmp_path, change, message):
    path = record(tmp_path / "r.h5", episodes=2)
    before = digest(path)
    task = change.pop("task", "reacher")
    with pytest.raises(RolloutFormatError, match=f"its {message} is"):
        record(path, task=task, policy="random", episodes=1, append=True, **change)
    assert digest(path) == before


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path):
    from worldmodel.data.writer import RolloutWriter, repair

    path = record(tmp_path / "r.h5", episodes=1)
    with RolloutReader(path) as reader:
        metadata = reader.metadata
    with RolloutWriter(path, metadata, append=True):
        with pytest.raises(RolloutFormatError, match=r"being written by another process \(pid \d+\)"):
            RolloutWriter(path, metadata, append=True)
        with pytest.raises(RolloutFormatError, match="being written"):
            repair(path)
    with RolloutWriter(path, metadata, append=True) as writer:  # the lock went with the first writer
        assert writer.num_episodes == 1
    assert not (tmp_path / "r.h5.lock").exists()


@pytest.mark.slow
def test_two_recorders_on_one_file_lose_nothing(tmp_path):
    """A live recorder's file is neither "repaired" under it nor shared: the second one is refused."""
    path = tmp_path / "two.h5"
    cmd = [sys.executable, "tools/record_rollouts.py", "task=reacher", "policy=random", "task.episode_steps=10", f"out={path}"]
    first = subprocess.Popen(cmd + ["episodes=1000", "seed=1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
        try:
            with RolloutReader(path) as reader:
                if reader.num_episodes >= 2:
                    break
        except (OSError, ValueError):
            pass
    second = subprocess.run(cmd + ["episodes=5", "seed=2", "append=true"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err[-2000:]
    assert second.returncode != 0 and "being written by another process" in second.stderr
    with h5py.File(path, "r") as f:
        assert len(f["episodes/length"]) == 1000
    record(path, policy="random", episodes=5, seed=2, append=True, episode_steps=10)  # after the first: appends
    with RolloutReader(path) as reader:
        assert reader.num_episodes == 1005


def test_existing_file_is_not_overwritten_without_append(tmp_path):
    path = record(tmp_path / "r.h5", episodes=1)
    before = digest(path)
    with pytest.raises(FileExistsError, match="append=true"):
        record(path, episodes=1)
    assert digest(path) == before


def test_unknown_policy_fails_before_creating_a_file(tmp_path):
    with pytest.raises(ValueError, match="Unknown policy"):
        record(tmp_path / "r.h5", policy="greedy")
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.slow
def test_recorder_killed_mid_run_leaves_every_finished_episode_intact(tmp_path):
    path = tmp_path / "crash.h5"
    cmd = [
        sys.executable,
        str(ROOT / "tools/record_rollouts.py"),
        "task=reacher",
        "policy=mixture",
        "episodes=1000",
        "seed=0",
        f"out={path}",
    ]
    for run, kill_after in enumerate((3, 7)):  # kill, append after the crash, kill again
        log = tmp_path / f"recorder{run}.log"
        with open(log, "w") as stderr:
            proc = subprocess.Popen(cmd + (["append=true"] if path.exists() else []), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.time() + 60
            while proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
                try:
                    with RolloutReader(path) as reader:
                        if reader.num_episodes >= kill_after:
                            break
                except (OSError, ValueError):
                    pass  # file not created yet
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert alive and time.time() < deadline, f"recorder run {run} stopped early:\n{log.read_text()[-3000:]}"
    crashed = read_all(path)
    assert len(crashed) >= 7
    # every listed episode is exactly what an uninterrupted recorder writes
    reference = read_all(record(tmp_path / "ref.h5", policy="mixture_tool", episodes=len(crashed), episode_steps=None))
    assert_same_episodes(crashed, reference)
    record(path, policy="mixture_tool", episodes=1, append=True, episode_steps=None)  # repairs, then appends
    with h5py.File(path, "r") as f:  # plain h5py opens the repaired file
        assert len(f["episodes/length"]) == len(crashed) + 1


@pytest.mark.parametrize("policy", ["random", "zero", "expert", "noisy_expert", "mixture"])
def test_every_policy_config_builds(policy):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose("record", overrides=[f"policy={policy}", "out=x.h5"])
    specs = [PolicySpec(**c) for c in cfg.policy.components]
    env = make_task_env("pusher", frame_size=(16, 16))
    for spec in specs:
        spec.build(env)
    if policy == "noisy_expert":
        assert specs[0].eps == 0.3


KILLED_WRITER = """
import os, signal, sys
from worldmodel.data import RolloutReader, RolloutWriter
with RolloutReader(sys.argv[1]) as reader:
    writer = RolloutWriter(sys.argv[2], reader.metadata)
    for i in range(reader.num_episodes):
        writer.add_episode(reader.episode(i))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.99])
def test_a_truncated_file_of_a_killed_writer_is_named_at_once(tmp_path, reacher_file, keep):
    """The writer flag makes readers use SWMR mode, which skips HDF5's end-of-file check."""
    killed = tmp_path / "killed.h5"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(reacher_file), str(killed)], cwd=ROOT, timeout=120)
    assert RolloutReader(killed).num_episodes == 6, "the killed writer's file itself is fine"
    cut = tmp_path / "cut.h5"
    data = killed.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    start = time.monotonic()
    with pytest.raises(RolloutFormatError, match="is truncated.*Copy or record it again"):
        RolloutReader(cut)
    assert time.monotonic() - start < 5, "no minutes of SWMR retries"
    with pytest.raises(RolloutFormatError, match="is truncated"):
        record(cut, episodes=1, append=True)
    assert cut.read_bytes() == data[: int(len(data) * keep)], "refused before touching the file"


def test_a_full_disk_stops_the_writer_before_it_writes_and_keeps_every_episode(tmp_path, reacher_file, monkeypatch):
    import shutil
    from collections import namedtuple

    from worldmodel.data import writer as writer_module

    path = tmp_path / "r.h5"
    shutil.copy(reacher_file, path)
    before = read_all(path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(writer_module.shutil, "disk_usage", lambda p: usage(1 << 30, (1 << 30) - (1 << 20), 1 << 20))
    with pytest.raises(writer_module.DiskFullError, match="Only 1.0 MiB free.*6 finished episodes are safe.*append=true"):
        record(path, episodes=2, append=True)
    with pytest.raises(writer_module.DiskFullError, match="is unchanged; free space and retry"):
        writer_module.repair(path)
    assert not (tmp_path / "r.h5.repairing").exists()
    monkeypatch.undo()
    with h5py.File(path, "r") as f:  # closed cleanly: plain h5py opens it
        assert len(f["episodes/length"]) == 6
    assert_same_episodes(before, read_all(path))
    record(path, episodes=1, append=True)
    assert len(read_all(path)) == 7


def test_record_tool_refuses_a_count_that_is_not_a_number(tmp_path):
    result = run_tool("record_rollouts.py", "task=reacher", "policy=random", "episodes=abc", f"out={tmp_path / 'r.h5'}", check=False)
    assert result.returncode != 0 and "episodes must be a whole number >= 1, got 'abc'" in result.stderr
    assert not (tmp_path / "r.h5").exists()
