"""The Fetch arm's tasks (Gymnasium-Robotics): made under this mujoco, seen, scored and solved, and
run through recording, training, evaluation and planning."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from conftest import SMALL_SEARCH, record, run_tool, tiny_config
from envs import get_task, make_task_env
from envs.mujoco.policies import make_policy
from worldmodel.data import RolloutReader

FETCH = ["fetch_push", "fetch_pick_and_place"]


def test_fetch_envs_are_made_under_this_mujoco():
    # Gymnasium-Robotics 1.4.2's own joint helpers fail every Fetch env under mujoco >= 3.3.
    env = gym.make("envs.mujoco.robotics:FetchPickAndPlace-v4")
    obs, _ = env.reset(seed=0)
    block = env.unwrapped.data.joint("object0:joint").qpos
    assert np.allclose(obs["achieved_goal"], block[:3]), "the block was placed through the mended helpers"
    check_env(env.unwrapped, skip_render_check=True)  # its "human" render mode would open a window
    env.close()


def test_without_gymnasium_robotics_the_error_says_how_to_install_it(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "envs.mujoco.robotics", raising=False)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[robotics\]'"):
        importlib.import_module("envs.mujoco.robotics")


@pytest.mark.parametrize("task", FETCH)
def test_fetch_pixel_env_shows_the_goal_and_scores_as_the_env_does(task):
    env = make_task_env(task)
    frame, info = env.reset(seed=1)
    assert frame.shape == (64, 64, 3) and info["state"].shape == (31,)  # flattened: achieved_goal 3, desired_goal 3, observation 25
    # The goal marker is where the env put its goal, not where the scene file left it.
    np.testing.assert_allclose(env.data.site("target0").xpos, env.unwrapped.goal, atol=1e-9)
    policy = make_policy("expert", env)
    policy.reset(np.random.default_rng(1))
    for _ in range(env.episode_steps):
        frame, reward, terminated, truncated, info = env.step(policy.act(frame, info))
        assert info["success"] == bool(info["is_success"])
        assert env.preset.success_from_reward(np.array(reward), np.zeros(4)) == info["success"]
    assert truncated and not terminated and info["success"]


@pytest.mark.parametrize("task", FETCH)
def test_fetch_experts_solve_their_tasks_and_random_actions_do_not(task):
    env = make_task_env(task, frame_size=(16, 16))
    rates = {}
    for name in ("expert", "random"):
        policy, successes = make_policy(name, env), []
        for seed in range(10):
            frame, info = env.reset(seed=seed)
            policy.reset(np.random.default_rng(seed))
            done = False
            while not done:
                frame, _, terminated, truncated, info = env.step(policy.act(frame, info))
                done = terminated or truncated
            successes.append(info["success"])
        rates[name] = np.mean(successes)
    assert rates["expert"] >= 0.9 and rates["random"] <= 0.3, rates


def test_fetch_state_round_trips_through_set_state():
    env = make_task_env("fetch_pick_and_place")
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    frame = env.set_state(qpos=qpos, qvel=qvel).copy()
    for _ in range(5):
        env.step(env.action_space.sample())
    assert not np.array_equal(env.render(), frame)
    assert np.array_equal(env.set_state(qpos=qpos, qvel=qvel), frame) and np.array_equal(env.data.qpos, qpos)


def test_state_policies_train_and_act_on_the_flattened_goal_observation(tmp_path):
    from envs.mujoco.policies import build_policy
    from envs.mujoco.recording import record_episode
    from envs.policy_zoo import train_snapshots

    preset = get_task("fetch_push", episode_steps=8)
    members = train_snapshots(preset, "state", [32], tmp_path / "zoo", hyperparameters={"n_steps": 32, "batch_size": 16, "n_epochs": 1})
    policy = build_policy(members[0].reference, make_task_env(preset, frame_size=(16, 16)))
    assert policy.observation_shape == (31,)
    episode = record_episode(make_task_env(preset, frame_size=(16, 16)), policy, seed=0)
    assert episode.actions.shape == (8, 4) and np.isfinite(episode.actions).all()


def test_a_success_target_must_exist():
    with pytest.raises(ValueError, match="'nowhere' is neither a body nor a site"):
        make_task_env("fetch_push", success_target="nowhere")
    with pytest.raises(ValueError, match="success_dims must be 2"):
        get_task("fetch_push", success_dims=4)


@pytest.mark.slow
def test_fetch_push_is_recorded_trained_evaluated_and_planned(tmp_path, fresh_accelerate_state):
    from worldmodel.training.trainer import train

    data = record(tmp_path / "fetch.h5", task="fetch_push", episodes=4, episode_steps=12)
    with RolloutReader(data) as reader:
        assert reader.metadata["task_preset"]["env_id"] == "envs.mujoco.robotics:FetchPushDense-v4"
        assert reader.frames(0, name="qpos").shape == (13, 22)
    checkpoint = train(tiny_config(data, tmp_path / "run", steps=6))
    from worldmodel.world_model import WorldModel

    wm = WorldModel.load(checkpoint)
    assert wm.pose_maps.projector.bodies == list(get_task("fetch_push").pose_bodies)
    # the goal lives outside the simulator state: recorded per episode, carried by the start bank, shown in the state observation
    with RolloutReader(data) as reader:
        goals = reader.goals
    assert goals.shape == (4, 3) and wm.start_bank["goals"].shape == (len(wm.start_bank["frames"]), 3)
    env = gym.make("DiffusionWorld-v0", checkpoint=str(checkpoint), observation="state", bf16=False)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"} and any(np.allclose(obs["desired_goal"], g) for g in goals)
    obs, _ = env.reset(
        options={
            "goal": goals[0] + 0.01,
            **{
                k: v[0].numpy()
                for k, v in (
                    ("context_frames", wm.start_bank["frames"]),
                    ("context_actions", wm.start_bank["actions"]),
                    ("context_states", wm.start_bank["states"]),
                )
            },
        }
    )
    np.testing.assert_allclose(obs["desired_goal"], goals[0] + 0.01)
    run_tool(
        "evaluate.py", f"checkpoint={checkpoint}", f"data={data}", f"out={tmp_path / 'eval'}", "horizons=[1,5]", "videos=1", "probe=false"
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["state_position_cm"]) == {"object0", "robot0:gripper_link"}
    run_tool(
        "plan.py",
        f"checkpoint={checkpoint}",
        f"out={tmp_path / 'plan'}",
        "episodes=1",
        *SMALL_SEARCH,
        "models=[world_model,oracle]",
        "task=fetch_push",
        "task.episode_steps=8",
    )
    results = json.loads((tmp_path / "plan" / "metrics.json").read_text())["results"]
    assert results["world_model"]["plan_seconds_per_step"] > 0 and "oracle" in results
