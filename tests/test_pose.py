"""Pose maps (worldmodel/pose.py): a state's bodies drawn where the task's camera sees them. Checked
against MuJoCo's own rendering (segmentation) and on known geometry; the denoisers read them, the
trainer and the world model draw them from the (recorded or imagined) state."""

import mujoco
import numpy as np
import pytest
import torch

from envs import get_task, make_task_env
from worldmodel.checkpoint import load_checkpoint
from worldmodel.models import build_networks
from worldmodel.pose import PoseMaps, PoseProjector, draw_segments
from worldmodel.world_model import WorldModel


def geom_centroids(env, bodies: list[str]) -> np.ndarray:
    """(len(bodies), 2) pixel centroid of each body's geoms in MuJoCo's segmentation rendering of the env's current state."""
    model = env.unwrapped.model
    renderer = mujoco.Renderer(model, *env.preset.frame_size)
    renderer.enable_segmentation_rendering()
    renderer.update_scene(env.data, camera=env._camera)
    ids = renderer.render()[..., 0]
    renderer.close()
    out = []
    for name in bodies:
        ys, xs = np.nonzero(np.isin(ids, np.nonzero(model.geom_bodyid == model.body(name).id)[0]))
        out.append((xs.mean() + 0.5, ys.mean() + 0.5))
    return np.array(out)


@pytest.mark.parametrize("task, bodies", [("reacher", ["fingertip", "target"]), ("pusher", ["object", "goal"])])
def test_projection_lands_on_the_rendered_body(task, bodies):
    """Spheres and cylinders centred on their body's origin: the segmentation's centroid is the projected origin."""
    env = make_task_env(task)
    projector = PoseProjector(env.unwrapped.model, env.preset.describe()["camera"], env.preset.frame_size)
    rng = np.random.default_rng(0)
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(5):
            env.step(rng.uniform(-1, 1, env.action_space.shape))
        ends = projector.segments(env.data.qpos[None])[0, [projector.bodies.index(b) for b in bodies], 1]
        np.testing.assert_allclose(ends, geom_centroids(env, bodies), atol=0.75)  # pixels; a few-pixel blob's centroid is coarse
    env.close()


def test_a_tracking_camera_centres_the_tracked_body():
    env = make_task_env(
        get_task(
            {
                "name": "cheetah",
                "env_id": "HalfCheetah-v5",
                "episode_steps": 10,
                "camera": {"distance": 4.0, "elevation": -15.0, "azimuth": 90.0, "track_body": "torso"},
            }
        )
    )
    projector = PoseProjector(env.unwrapped.model, env.preset.describe()["camera"], env.preset.frame_size, bodies=["torso"])
    env.reset(seed=0)
    for _ in range(20):
        env.step(np.ones(env.action_space.shape))
    projector.segments(env.data.qpos[None])  # kinematics on its own data: the camera follows the torso wherever it ran
    torso = env.unwrapped.model.body("torso").id
    np.testing.assert_allclose(projector._project(projector._data.subtree_com[torso]), [32, 32], atol=1e-6)
    env.close()


def test_bodies_are_links_from_their_parent_and_points_under_the_world():
    env = make_task_env("reacher")
    projector = PoseProjector(env.unwrapped.model, env.preset.describe()["camera"], env.preset.frame_size)
    assert projector.bodies == ["body0", "body1", "fingertip", "target"]
    env.reset(seed=0)
    seg = projector.segments(env.data.qpos[None])[0]
    np.testing.assert_allclose(seg[0, 0], seg[0, 1])  # the base hangs from the world: a point
    np.testing.assert_allclose(seg[1, 0], seg[0, 1])  # link 0: base -> elbow
    np.testing.assert_allclose(seg[2, 0], seg[1, 1])  # link 1: elbow -> fingertip
    np.testing.assert_allclose(seg[3, 0], seg[3, 1])  # the target: a point
    link = np.linalg.norm(seg[1, 1] - seg[1, 0])  # 0.1 m seen top-down from 0.6 m with a 45 degree field of view
    assert link == pytest.approx(0.1 / (0.6 * np.tan(np.radians(22.5))) * 32, rel=0.05)
    with pytest.raises(ValueError, match=r"qpos must be \(N, 4\)"):
        projector.segments(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="not in the task's model"):
        PoseProjector(env.unwrapped.model, env.preset.describe()["camera"], (64, 64), bodies=["elbow"])
    env.close()


def test_draw_segments_known_answers():
    segments = torch.tensor([[[[4.5, 4.5], [4.5, 4.5]], [[0.0, 2.5], [8.0, 2.5]]]])  # a point at pixel (4, 4); a row-2 line
    maps = draw_segments(segments, (8, 8), sigma=1.0)
    assert maps.shape == (1, 2, 8, 8)
    assert maps[0, 0, 4, 4] == 1 and maps[0, 0, 4, 5] == pytest.approx(np.exp(-0.5))
    assert torch.allclose(maps[0, 1, 2], torch.ones(8)) and maps[0, 1, 4, 3] == pytest.approx(np.exp(-2.0))


def test_segments_placed_by_the_data_loader_give_the_training_losses_of_segments_placed_in_the_step():
    """Training places the bodies in its loader (no device-to-host copy per step on a GPU); the loss must not change."""
    from dataclasses import asdict

    from worldmodel.data.windows import collate_windows
    from worldmodel.diffusion import EDM
    from worldmodel.training.losses import WindowLossConfig, window_losses

    env = make_task_env(get_task("reacher"))
    pose_maps = PoseMaps(PoseProjector(env.unwrapped.model, asdict(env.preset.camera), (16, 16), ["body1", "fingertip"]), 1.0)
    env.close()
    rng = np.random.default_rng(0)
    items = [
        {
            "frames": torch.from_numpy(rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)),
            "actions": torch.zeros(2, 2),
            "rewards": torch.zeros(2),
            "terminated": torch.zeros(2, dtype=torch.bool),
            "qpos": torch.from_numpy(rng.uniform(-1, 1, (3, 4)).astype(np.float32)),
            "qvel": torch.zeros(3, 2),
        }
        for _ in range(2)
    ]
    batch = pose_maps.with_segments(collate_windows)(items)
    assert batch["segments"].shape == (2, 3, 2, 2, 2)
    assert torch.allclose(pose_maps.draw(batch["segments"]), pose_maps(batch["qpos"]))
    space = {"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    denoiser, reward_head = build_networks(
        {"architecture": "framestack", "channels": [8, 8], "blocks": 1, "cond_dim": 16, "pose_channels": 2}, {"channels": 8}, space, 2, 1
    )
    losses = [
        window_losses(denoiser, reward_head, EDM(), WindowLossConfig(2, 1), b, torch.Generator().manual_seed(0), pose_maps=pose_maps)
        for b in (batch, {k: v for k, v in batch.items() if k != "segments"})
    ]
    assert torch.equal(losses[0]["loss"], losses[1]["loss"])


@pytest.mark.parametrize("architecture, frames", [("framestack", 2), ("spacetime", 3)])
def test_denoisers_draw_where_the_pose_maps_say_and_require_them(architecture, frames):
    space = {"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    denoiser, _ = build_networks(
        {"architecture": architecture, "channels": [8, 8], "blocks": 1, "cond_dim": 16, "state_dim": 5, "pose_channels": 3},
        {"channels": 8},
        space,
        2,
        1,
    )
    for weight in denoiser.parameters():  # zero-initialised outputs would hide any dependence
        if weight.ndim > 1 and not weight.any():
            torch.nn.init.normal_(weight, std=0.1)
    x, c_noise, actions, states = torch.randn(2, 3, 3, 16, 16), torch.zeros(2, 3), torch.zeros(2, 2, 2), torch.zeros(2, 3, 5)
    pose = torch.zeros(2, frames, 3, 16, 16)
    a = denoiser(x, c_noise, actions, outputs_from=2, states=states, pose=pose)
    pose[:, -1, 0, 8, 8] = 1
    b = denoiser(x, c_noise, actions, outputs_from=2, states=states, pose=pose)
    assert not torch.allclose(a[:, -1], b[:, -1])
    with pytest.raises(ValueError, match="pose maps of 3 channels"):
        denoiser(x, c_noise, actions, outputs_from=2, states=states)
    with pytest.raises(ValueError, match="pose maps of 3 channels"):
        denoiser(x, c_noise, actions, outputs_from=2, states=states, pose=torch.zeros(2, frames, 2, 16, 16))


def test_a_pose_model_draws_frames_from_the_imagined_states_pose(state_checkpoint):
    """The default state-track model reads the pose maps of its imagined state: the spec names the
    bodies, and the maps the model draws for a step are those of the state it imagined."""
    spec = load_checkpoint(state_checkpoint)["spec"]
    assert spec.pose == {"bodies": ["body0", "body1", "fingertip", "target"], "sigma": 1.0} and spec.denoiser["pose_channels"] == 4
    wm = WorldModel.load(state_checkpoint, bf16=False)
    frames, actions, states = wm.random_start(2, np.random.default_rng(0))
    seen = []
    original = wm.denoiser.forward
    wm.denoiser.forward = lambda *args, **kwargs: seen.append(kwargs["pose"]) or original(*args, **kwargs)
    window, step = wm.step(wm.window(frames, actions, states), torch.zeros(2, 2))
    nq = spec.dynamics["nq"]
    expected = PoseMaps.from_spec(spec.task, spec.frame_shape, spec.pose)(torch.stack([states[:, -1, :nq], step.state[:, :nq]], 1))
    assert seen and all(torch.allclose(pose, expected) for pose in seen)


@pytest.mark.parametrize("task", ["reacher", "pusher", "fetch_push", "fetch_pick_and_place"])
def test_the_presets_model_file_is_the_envs_model(task):
    """The library loads a task's kinematics from the preset's model_file: the env's own model, body for body."""
    from worldmodel.pose import task_model

    preset = get_task(task)
    env = make_task_env(preset)
    env.reset(seed=0)
    loaded, own = task_model(preset.describe()), env.unwrapped.model
    assert [loaded.body(i).name for i in range(loaded.nbody)] == [own.body(i).name for i in range(own.nbody)]
    for field in ("body_pos", "body_quat", "jnt_range", "qpos0", "jnt_axis"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(own, field))
    state = np.concatenate([env.unwrapped.data.qpos, env.unwrapped.data.qvel])[None]
    nq = own.nq
    np.testing.assert_allclose(
        PoseProjector(loaded, preset.describe()["camera"], preset.frame_size).segments(state[:, :nq]),
        PoseProjector(own, preset.describe()["camera"], preset.frame_size).segments(state[:, :nq]),
        atol=1e-9,
    )
    env.close()


def test_the_library_never_imports_envs(tmp_path):
    """Every worldmodel module, and a Fetch task's kinematics for pose maps, without envs in sys.modules."""
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    preset = json.dumps(get_task("fetch_push").describe())
    code = (
        "import json, pkgutil, importlib, sys, worldmodel\n"
        "for m in pkgutil.walk_packages(worldmodel.__path__, 'worldmodel.'):\n"
        "    importlib.import_module(m.name)\n"
        "from worldmodel.pose import PoseProjector\n"
        f"PoseProjector.from_task(json.loads({preset!r}), (64, 64))\n"
        "assert not [m for m in sys.modules if m == 'envs' or m.startswith('envs.')], sorted(m for m in sys.modules if m.startswith('envs'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert result.returncode == 0, result.stderr[-2000:]
