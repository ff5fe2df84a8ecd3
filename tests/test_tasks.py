import os
import subprocess
import sys

import numpy as np
import pytest

import envs
from envs import get_task, make_task_env


@pytest.mark.parametrize("task", ["reacher", "pusher"])
def test_preset_renders_frames_that_follow_the_simulation(task):
    env = make_task_env(task)
    frame, info = env.reset(seed=0)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert env.observation_space.contains(frame)
    assert {"qpos", "qvel", "success", "distance"} <= set(info)
    frames = [frame]
    for _ in range(10):
        frame, reward, terminated, truncated, info = env.step(env.action_space.high)
        frames.append(frame)
    assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.1, "the arm moved, the picture must change"
    assert np.array_equal(env.render(), frames[-1])
    env.close()


def test_frame_size_and_episode_length_are_configurable():
    env = make_task_env("reacher", frame_size=(32, 48), episode_steps=5)
    frame, _ = env.reset(seed=0)
    assert frame.shape == (32, 48, 3)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        done = terminated or truncated
    assert steps == 5 and truncated


def test_action_repeat_advances_the_simulation_that_many_steps():
    single, double = make_task_env("reacher"), make_task_env("reacher", action_repeat=2)
    for env in (single, double):
        env.reset(seed=0)
        env.step(np.zeros(2, np.float32))
    assert double.data.time == pytest.approx(2 * single.data.time)


@pytest.mark.parametrize("task", ["reacher", "fetch_push"])  # MuJoCo's native rollout; Fetch steps its env
def test_rollout_states_is_stepping_the_simulator_and_leaves_it_as_it_was(task):
    env = make_task_env(task)
    env.reset(seed=0)
    start = env.get_state()
    actions = np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high, (3, 4, *env.action_space.shape))
    states = env.rollout_states(actions)
    assert states.shape == (3, 4, env.data.qpos.size + env.data.qvel.size)
    np.testing.assert_array_equal(env.get_state(), start)
    for sequence, expected in zip(actions, states):
        env.set_state(start)
        for action, state in zip(sequence, expected):
            env.simulate(action)
            np.testing.assert_allclose(np.concatenate([env.data.qpos, env.data.qvel]), state, atol=1e-9)  # solver warm start: ~1e-15
    env.close()


def test_reacher_success_is_fingertip_on_target():
    env = make_task_env("reacher")
    env.reset(seed=0)
    data, model = env.data, env.unwrapped.model
    import mujoco

    data.qpos[:2] = [0.0, 0.0]  # arm straight along +x: fingertip at (0.21, 0)
    data.qpos[2:] = [0.21, 0.0]  # the target's slide joints hold its (x, y)
    mujoco.mj_forward(model, data)
    assert env.distance() == pytest.approx(0.0, abs=1e-6) and env.success()
    data.qpos[2:] = [0.0, 0.2]
    mujoco.mj_forward(model, data)
    assert not env.success()


def test_pusher_success_is_object_on_goal():
    import mujoco

    env = make_task_env("pusher")
    env.reset(seed=0)
    data, model = env.data, env.unwrapped.model
    data.qpos[-4:-2] = data.qpos[-2:]  # object onto the goal
    mujoco.mj_forward(model, data)
    assert env.success()
    data.qpos[-4:-2] = data.qpos[-2:] + [0.0, 0.2]
    mujoco.mj_forward(model, data)
    assert not env.success() and env.distance() == pytest.approx(0.2, abs=1e-6)


def test_success_judged_from_rewards_matches_the_simulators_test():
    env = make_task_env("reacher")
    env.reset(seed=0)
    rng, rewards, actions, distances = np.random.default_rng(0), [], [], []
    for _ in range(40):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        rewards.append(env.step(action)[1])
        actions.append(action)
        distances.append(env.distance())
    rewards, actions, distances = np.asarray(rewards), np.stack(actions), np.asarray(distances)
    preset = env.preset
    just_out = rewards + distances - 0.02 - 1e-6  # the same steps, had the fingertip been just outside 2 cm
    just_in = rewards + distances - 0.02 + 1e-6
    assert not preset.success_from_reward(just_out, actions).any() and preset.success_from_reward(just_in, actions).all()
    near = rewards + distances - 0.01  # the same steps, had the fingertip been 1 cm from the target
    assert not preset.success_from_reward(rewards, actions).any() and preset.success_from_reward(near, actions).all()
    assert get_task("pusher").success_from_reward(rewards, actions) is None, "pusher's reward mixes several distances"
    assert get_task("reacher", action_repeat=2).success_from_reward(rewards, actions) is None


def test_bad_task_options_are_named():
    with pytest.raises(ValueError, match="Unknown task 'walker'.*reacher"):
        get_task("walker")
    with pytest.raises(ValueError, match="frame_size"):
        get_task("reacher", frame_size=(2, 2))
    with pytest.raises(ValueError, match="Unknown task option"):
        get_task("reacher", fps=3)


def test_mujoco_gl_defaults_to_egl_without_display():
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY")}
    out = subprocess.run(
        [sys.executable, "-c", "import envs, os; print(os.environ['MUJOCO_GL'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "egl"
    assert envs.TASKS["reacher"].env_id == "Reacher-v5"
