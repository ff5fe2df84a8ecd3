import shutil

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import record
from worldmodel.data import RolloutFormatError, RolloutReader
from worldmodel.data.windows import RolloutWindows, collate_windows


def test_windows_cover_each_episode_without_crossing_boundaries(reacher_file):
    ds = RolloutWindows(reacher_file, context=4, target=2, stride=3, split="all")
    # 13 frames per episode, windows of 6 frames every 3: starts 0, 3, 6 -> 3 per episode
    assert len(ds) == 6 * 3
    with RolloutReader(reacher_file) as reader:
        for i in range(len(ds)):
            item = ds[i]
            e, s = int(item["episode"]), int(item["start"])
            assert item["frames"].shape == (6, 64, 64, 3) and item["frames"].dtype == torch.uint8
            assert np.array_equal(item["frames"].numpy(), reader.frames(e, s, s + 6))
            assert np.array_equal(item["actions"].numpy(), reader.steps("actions", e, s, s + 5))
            assert item["rewards"].shape == (5,) and item["terminated"].dtype == torch.bool
            assert s + 6 <= reader.lengths[e] + 1


def test_split_is_by_episode_deterministic_and_disjoint(reacher_file):
    train = RolloutWindows(reacher_file, split="train", val_fraction=0.34, split_seed=1)
    val = RolloutWindows(reacher_file, split="val", val_fraction=0.34, split_seed=1)
    assert len(val.episodes) == 2 and len(train.episodes) == 4
    assert set(train.episodes).isdisjoint(val.episodes)
    assert np.array_equal(train.episodes, RolloutWindows(reacher_file, split="train", val_fraction=0.34, split_seed=1).episodes)
    assert set(int(ds["episode"]) for ds in val) == set(val.episodes.tolist())


def test_dataloader_workers_and_cache_give_the_same_batches(reacher_file):
    ds = RolloutWindows(reacher_file, split="all")
    cached = RolloutWindows(reacher_file, split="all", cache=True)
    batches = [
        next(iter(DataLoader(d, batch_size=16, num_workers=w, collate_fn=collate_windows))) for d, w in ((ds, 0), (ds, 2), (cached, 0))
    ]
    assert batches[0]["frames"].shape == (16, 5, 64, 64, 3)
    for other in batches[1:]:
        for key in batches[0]:
            assert torch.equal(batches[0][key], other[key])


def test_window_longer_than_every_episode_is_refused(reacher_file):
    with pytest.raises(RolloutFormatError, match="longer than every episode.*13 frames"):
        RolloutWindows(reacher_file, context=10, target=4)


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN or inf"), (5.0, "outside the action space")])
def test_bad_actions_in_a_file_are_reported_with_their_episode(tmp_path, reacher_file, bad, message):
    path = tmp_path / "bad.h5"
    shutil.copy(reacher_file, path)
    with h5py.File(path, "a") as f:
        f["actions"][30, 1] = bad
    with pytest.raises(RolloutFormatError, match=f"step 30 \\(episode 2\\).*{message}"):
        RolloutWindows(path)


def test_wrong_version_missing_and_corrupt_files_are_named(tmp_path, reacher_file):
    with pytest.raises(FileNotFoundError, match="record_rollouts.py"):
        RolloutWindows(tmp_path / "missing.h5")
    old = tmp_path / "old.h5"
    shutil.copy(reacher_file, old)
    for version, shown in [(99, "99"), ("x", "'x'"), (1.5, "1.5")]:
        with h5py.File(old, "a") as f:
            f.attrs["format_version"] = version
        with pytest.raises(RolloutFormatError, match=f"{old}.*format_version {shown}; this code reads version 1"):
            RolloutWindows(old)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(reacher_file.read_bytes()[:5000])
    with pytest.raises(RolloutFormatError, match="not a readable HDF5 file"):
        RolloutWindows(corrupt)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(RolloutFormatError, match="not a DiffusionWorld rollout file"):
        RolloutWindows(foreign)


def test_an_empty_split_or_file_is_refused(tmp_path):
    path = record(tmp_path / "one.h5", episodes=1)
    with pytest.raises(RolloutFormatError, match="no episode"):
        RolloutWindows(path, split="val", val_fraction=0.5)


def test_start_bank_spreads_over_episodes(reacher_file):
    from worldmodel.data.stats import start_bank

    windows = RolloutWindows(reacher_file, context=4, target=1, split="all")
    episodes = len(np.unique(windows.index[:, 0]))
    bank = start_bank(windows, size=episodes + 1, seed=0)
    assert bank["frames"].shape[:2] == (episodes + 1, 4) and bank["actions"].shape[:2] == (episodes + 1, 3)
    episode_of = {bytes(windows[i]["frames"][0].numpy()): int(windows.index[i, 0]) for i in range(len(windows))}
    drawn = [episode_of[bytes(f.numpy())] for f in bank["frames"][:, 0]]
    assert sorted(drawn[:episodes]) == list(range(episodes)), "one window of every episode before a second of any"
