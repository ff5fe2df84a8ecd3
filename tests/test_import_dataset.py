"""tools/import_dataset.py: Minari datasets written by Minari's own DataCollector, and LeRobot
dataset directories (v2.1 and v3.0 layouts) written here with pyarrow and PyAV."""

import json

import gymnasium as gym
import numpy as np
import pytest

from conftest import run_tool
from envs import make_task_env
from envs.importers import write_imported
from envs.importers.lerobot_data import import_lerobot
from worldmodel.data import RolloutReader
from worldmodel.data.format import RolloutFormatError


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))  # also for the tool's subprocess
    return root


def collect(env, dataset_id, seeds, **kw):
    from minari import DataCollector

    env = DataCollector(env, **kw)
    env.action_space.seed(0)
    for seed in seeds:
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.create_dataset(
        dataset_id=dataset_id,
        algorithm_name="random",
        author="tests",
        author_email="tests@example.org",
        code_permalink="https://example.org",
        description="made by the tests",
        eval_env=env.env.spec,
    )


class StateInfo(gym.Wrapper):
    """Infos of one structure at reset and step, as Minari's record_infos needs: the simulator state and success."""

    def reset(self, **kw):
        frame, info = self.env.reset(**kw)
        return frame, {k: info[k] for k in ("qpos", "qvel", "success")}

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        return frame, reward, terminated, truncated, {k: info[k] for k in ("qpos", "qvel", "success")}


def read_episodes(path):
    """(metadata, frame shape, episodes) of a rollout file."""
    with RolloutReader(path) as reader:
        return reader.metadata, reader.frame_shape, [reader.episode(i) for i in range(reader.num_episodes)]


def test_minari_state_dataset_is_rendered_by_replaying_each_episode(minari_root, tmp_path):
    collect(gym.make("Reacher-v5", max_episode_steps=8), "test/reacher-v0", seeds=[11, 12, 13])
    out = tmp_path / "reacher.h5"
    result = run_tool("import_dataset.py", "source=minari", "dataset=test/reacher-v0", f"out={out}")
    assert "wrote 3 episodes of 'reacher'" in result.stdout and "nq=4 nv=4" in result.stdout
    metadata, _, episodes = read_episodes(out)
    assert metadata["task_preset"]["env_id"] == "Reacher-v5" and metadata["source"]["minari"] == "test/reacher-v0"
    # the frames are what the reacher task's camera shows when the recorded actions are replayed from the recorded seed
    env = make_task_env("reacher", episode_steps=8)
    for episode, seed in zip(episodes, [11, 12, 13]):
        frame, info = env.reset(seed=seed)
        assert episode.seed == seed and len(episode.actions) == 8
        np.testing.assert_array_equal(episode.frames[0], frame)
        for t, action in enumerate(episode.actions):
            frame, reward, *_, info = env.step(action)
            np.testing.assert_array_equal(episode.frames[t + 1], frame)
            np.testing.assert_allclose(episode.qpos[t + 1], info["qpos"])
            assert episode.rewards[t] == pytest.approx(reward) and episode.success[t] == info["success"]


def test_minari_replay_refuses_an_env_that_is_not_the_recorded_one(minari_root):
    from envs.importers.minari_data import import_minari

    collect(gym.make("Reacher-v5", max_episode_steps=4), "test/reacher-v0", seeds=[1])
    with pytest.raises(ValueError, match="runs Pusher-v5, but the dataset was recorded on Reacher-v5"):
        import_minari("test/reacher-v0", task="pusher")
    # same env id, other physics: the replay's rewards stop matching the recording
    data = import_minari("test/reacher-v0", task={"name": "reacher", "env_kwargs": {"reward_control_weight": 0.5}})
    with pytest.raises(RolloutFormatError, match="episode 0, step 0: the replay's reward"):
        next(data.episodes)
    with pytest.raises(ValueError, match="the observations are one array, not a dict: use frames=observation"):
        import_minari("test/reacher-v0", frames="pixels")
    with pytest.raises(FileNotFoundError, match="Minari dataset 'test/missing-v0' not found"):
        import_minari("test/missing-v0")


def test_minari_image_observations_and_recorded_infos(minari_root, tmp_path):
    from envs.importers.minari_data import import_minari

    collect(StateInfo(make_task_env("reacher", episode_steps=5)), "test/pixels-v0", seeds=[3, 4], record_infos=True)
    data = import_minari("test/pixels-v0", frames="observation", task="reacher_pixels", frame_size=(32, 32))
    assert write_imported(data, tmp_path / "pixels.h5") == 2
    metadata, frame_shape, episodes = read_episodes(tmp_path / "pixels.h5")
    assert frame_shape == (32, 32, 3) and metadata["task"] == "reacher_pixels" and metadata["nq"] == 4
    env = make_task_env("reacher", episode_steps=5)
    frame, info = env.reset(seed=3)
    np.testing.assert_allclose(episodes[0].qpos[0], info["qpos"])
    # area-averaged to 32x32: each pixel the mean of a 2x2 block of the rendered frame (Minari stores
    # image observations as JPEG, so up to its compression error)
    blocks = frame.reshape(32, 2, 32, 2, 3).mean((1, 3))
    assert np.abs(episodes[0].frames[0].astype(float) - blocks).mean() < 1.5


def test_images_without_state_train_frames_only(minari_root, tmp_path):
    from accelerate.state import AcceleratorState

    from conftest import tiny_config
    from worldmodel.training.trainer import train

    collect(make_task_env("reacher", episode_steps=5), "test/bare-v0", seeds=[1, 2, 3, 4])
    out = tmp_path / "bare.h5"
    run_tool("import_dataset.py", "source=minari", "dataset=test/bare-v0", "frames=observation", f"out={out}")
    try:
        with pytest.raises(ValueError, match="holds no simulator state .* train it with dynamics=none"):
            train(tiny_config(out, tmp_path / "run"))
        AcceleratorState._reset_state()
        assert train(tiny_config(out, tmp_path / "frames_only", dynamics="none", steps=2, save_every=2)).is_file()
    finally:
        AcceleratorState._reset_state()


def encode_video(path, frames, fps):
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}  # lossless: the test compares pixels
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def scene(episode, t):
    """A 48x64 frame with a square that moves with t, in a colour per episode."""
    frame = np.full((48, 64, 3), 30, np.uint8)
    frame[10:26, 4 + 6 * t : 20 + 6 * t] = (200, 60 + 100 * episode, 40)
    return frame


def write_lerobot(root, version, lengths, fps=10):
    import imageio.v3 as iio
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {
        "observation.images.top": {"dtype": "video", "shape": [48, 64, 3]},
        "observation.images.wrist": {"dtype": "image", "shape": [48, 64, 3]},
        "observation.state": {"dtype": "float32", "shape": [2]},
        "action": {"dtype": "float32", "shape": [2]},
    }
    info = {"codebase_version": version, "fps": fps, "chunks_size": 1000, "features": features}
    rows = []
    for e, n in enumerate(lengths):
        for t in range(n):
            rows.append(
                {
                    "episode_index": e,
                    "frame_index": t,
                    "timestamp": t / fps,
                    "action": [0.1 * t, -0.1 * e],
                    "observation.state": [t, e],
                    "next.reward": float(t),
                    "next.done": t == n - 1,
                    "observation.images.wrist": {"bytes": iio.imwrite("<bytes>", scene(e, t)[::-1], extension=".png"), "path": None},
                }
            )
    if version == "v3.0":
        info |= {
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        }
        (root / "data/chunk-000").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "data/chunk-000/file-000.parquet")
        encode_video(
            root / "videos/observation.images.top/chunk-000/file-000.mp4",
            np.stack([scene(e, t) for e, n in enumerate(lengths) for t in range(n)]),
            fps,
        )
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) / fps
        (root / "meta/episodes/chunk-000").mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(
                [
                    {
                        "episode_index": e,
                        "length": n,
                        "videos/observation.images.top/chunk_index": 0,
                        "videos/observation.images.top/file_index": 0,
                        "videos/observation.images.top/from_timestamp": float(starts[e]),
                    }
                    for e, n in enumerate(lengths)
                ]
            ),
            root / "meta/episodes/chunk-000/file-000.parquet",
        )
    else:
        info |= {
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        }
        (root / "data/chunk-000").mkdir(parents=True)
        for e, n in enumerate(lengths):
            pq.write_table(
                pa.Table.from_pylist([r for r in rows if r["episode_index"] == e]), root / f"data/chunk-000/episode_{e:06d}.parquet"
            )
            encode_video(
                root / f"videos/chunk-000/observation.images.top/episode_{e:06d}.mp4", np.stack([scene(e, t) for t in range(n)]), fps
            )
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_lerobot_dataset_frames_actions_and_state(tmp_path, version):
    root = write_lerobot(tmp_path / "so100_pick", version, lengths=[6, 5])
    out = tmp_path / "lerobot.h5"
    result = run_tool("import_dataset.py", "source=lerobot", f"dataset={root}", "frame_size=[48,64]", f"out={out}")
    assert "wrote 2 episodes of 'so100_pick'" in result.stdout and "nq=2 nv=0" in result.stdout
    metadata, _, episodes = read_episodes(out)
    assert metadata["source"]["camera"] == "observation.images.top"
    for e, (episode, n) in enumerate(zip(episodes, [6, 5])):
        # T rows: T frames, the T-1 actions between them and the rewards and dones they led to
        assert len(episode.frames) == n and len(episode.actions) == n - 1
        expected = np.stack([scene(e, t) for t in range(n)])
        assert np.abs(episode.frames.astype(int) - expected).max() <= 2  # the episode's own segment of the video
        np.testing.assert_allclose(episode.actions, [[0.1 * t, -0.1 * e] for t in range(n - 1)], rtol=1e-6)
        np.testing.assert_array_equal(episode.qpos, [[t, e] for t in range(n)])
        assert episode.rewards.tolist() == list(range(n - 1)) and not episode.terminated.any() and episode.truncated[-1]
    first = next(import_lerobot(root, camera="observation.images.wrist", frame_size=(48, 64)).episodes)
    np.testing.assert_array_equal(first.frames[2], scene(0, 2)[::-1])  # PNG images: lossless


def test_imported_state_trains_a_state_track_without_a_simulator(tmp_path):
    """Data from elsewhere names no MuJoCo task: its state track trains on the recorded state, without
    pose maps or joint limits (both need the task's MuJoCo model)."""
    from accelerate.state import AcceleratorState

    from conftest import tiny_config
    from worldmodel.checkpoint import load_checkpoint
    from worldmodel.training.trainer import train

    root = write_lerobot(tmp_path / "so100_pick", "v2.1", lengths=[10, 10])
    out = tmp_path / "lerobot.h5"
    run_tool("import_dataset.py", "source=lerobot", f"dataset={root}", "frame_size=[32,32]", f"out={out}")
    try:
        path = train(tiny_config(out, tmp_path / "run", steps=2, save_every=2, **{"window.context": 2}))
    finally:
        AcceleratorState._reset_state()
    spec = load_checkpoint(path)["spec"]
    assert spec.has_state and spec.pose == {} and "joint_limits" not in spec.dynamics and "pose_channels" not in spec.denoiser


def test_lerobot_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no meta/info.json"):
        import_lerobot(tmp_path)
    root = write_lerobot(tmp_path / "d", "v2.1", lengths=[3])
    with pytest.raises(ValueError, match="camera='front' is not an image or video feature"):
        import_lerobot(root, camera="front")
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps(info | {"codebase_version": "v1.6"}))
    with pytest.raises(RolloutFormatError, match="codebase_version 'v1.6' is not supported"):
        import_lerobot(root)
