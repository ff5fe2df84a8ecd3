"""DiffusionWorld-v0 as RL code sees it: registration, spaces, determinism, gymnasium's and SB3's
checkers, the native vector env against single envs, bad input, rendering."""

import ast
import re
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import envs
from conftest import ROOT, run_tool
from envs.diffusion_world import DiffusionWorldEnv, DiffusionWorldVectorEnv


@pytest.fixture
def env(checkpoint):
    env = gym.make("DiffusionWorld-v0", checkpoint=str(checkpoint), bf16=False, render_mode="rgb_array")
    yield env
    env.close()


def rollout(env, seed, actions, reset_options=None):
    """Frames of one episode: the reset observation then one per action."""
    obs, _ = env.reset(seed=seed, options=reset_options)
    frames = [obs]
    for a in actions:
        frames.append(env.step(a)[0])
    return np.stack(frames)


def test_registered_on_import_and_by_module_prefix(checkpoint, monkeypatch):
    assert "DiffusionWorld-v0" in gym.registry and envs.TASKS
    env = gym.make("envs:DiffusionWorld-v0", checkpoint=str(checkpoint))
    assert isinstance(env.unwrapped, DiffusionWorldEnv)
    monkeypatch.setenv("DIFFUSION_WORLD_CHECKPOINT", str(checkpoint))
    assert isinstance(gym.make("DiffusionWorld-v0").unwrapped, DiffusionWorldEnv)


def test_missing_checkpoint_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFUSION_WORLD_CHECKPOINT", raising=False)
    with pytest.raises(ValueError, match="tools/train.py"):
        gym.make("DiffusionWorld-v0")
    with pytest.raises(FileNotFoundError, match="tools/train.py"):
        gym.make("DiffusionWorld-v0", checkpoint=str(tmp_path / "none.pt"))


def test_spaces_and_step_types(env):
    real = envs.make_task_env("reacher")
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == real.action_space
    real.close()
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info == {"step": 0}
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3)
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert info["step"] == 1 and 0.0 <= info["termination_prob"] <= 1.0
    assert terminated == (info["termination_prob"] > 0.5)


def test_truncates_at_max_episode_steps(checkpoint):
    env = DiffusionWorldEnv(checkpoint, max_episode_steps=3)
    env.reset(seed=0)
    assert [env.step(np.zeros(2, np.float32))[3] for _ in range(3)] == [False, False, True]
    # Default: the episode length the model's data was recorded with (the fixture's 12 steps), not the preset's 50.
    assert DiffusionWorldEnv(checkpoint).max_episode_steps == 12


def test_gymnasium_env_checker_passes(env):
    check_env(env.unwrapped, skip_render_check=False)


def test_same_seed_and_actions_same_frames(env):
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 2)).astype(np.float32)
    a, b = rollout(env, 3, actions), rollout(env, 3, actions)
    assert np.array_equal(a, b)
    c = rollout(env, 4, actions)
    assert not np.array_equal(a, c)


def test_reset_from_given_context(env, checkpoint):
    real = envs.make_task_env("reacher")
    frame, _ = real.reset(seed=0)
    frames, actions = [frame], []
    for _ in range(3):
        actions.append(real.action_space.sample())
        frames.append(real.step(actions[-1])[0])
    real.close()
    options = {"context_frames": np.stack(frames), "context_actions": np.stack(actions)}
    obs, _ = env.reset(seed=0, options=options)
    assert np.array_equal(obs, frames[-1])
    bad = [
        ({"context_frames": np.stack(frames)[:2], "context_actions": np.stack(actions)}, "context length"),
        ({"context_frames": np.stack(frames).astype(np.float32), "context_actions": np.stack(actions)}, "uint8"),
        ({"context_frames": np.stack(frames), "context_actions": np.stack(actions)[:2]}, "actions between"),
        ({"context_frames": np.stack(frames), "context_actions": np.full((3, 2), np.nan)}, "NaN"),
        ({"context_frames": np.stack(frames)}, "context_actions"),
        ({"context_frame": np.stack(frames)}, "context_frames"),
        ({"context_frames": np.stack(frames), "context_actions": [["a", "b"]] * 3}, "context_actions must hold real numbers.*<U1"),
        ("context", "options must be a dict.*got str"),
    ]
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            env.reset(options=options)


def test_bad_actions_raise_and_out_of_bounds_are_clipped(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0], np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))
    for action, dtype in [(np.array([True, False]), "bool"), (np.array([1 + 1j, 0]), "complex128"), (["left", "up"], "<U4")]:
        with pytest.raises(ValueError, match=f"Action must hold real numbers \\(int or float\\), got dtype {dtype}"):
            env.step(action)
    high = env.action_space.high
    assert np.array_equal(rollout(env, 1, [high * 10]), rollout(env, 1, [high]))


def test_render_returns_the_current_frame_upscaled(checkpoint):
    env = DiffusionWorldEnv(checkpoint, render_mode="rgb_array", render_scale=4)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (256, 256, 3) and np.array_equal(frame[::4, ::4], obs)
    assert DiffusionWorldEnv(checkpoint).render() is None


def test_vector_env_is_native_and_follows_the_vector_api(checkpoint):
    vec = gym.make_vec("DiffusionWorld-v0", num_envs=3, checkpoint=str(checkpoint))
    assert isinstance(vec, DiffusionWorldVectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.observation_space.shape == (3, 64, 64, 3) and vec.single_observation_space.shape == (64, 64, 3)
    assert vec.action_space.shape == (3, 2) and vec.single_action_space.shape == (2,)
    obs, info = vec.reset(seed=0)
    assert obs in vec.observation_space and info["_step"].all()
    obs, rewards, terminated, truncated, info = vec.step(vec.action_space.sample())
    assert rewards.shape == terminated.shape == truncated.shape == (3,) and terminated.dtype == bool
    assert info["_termination_prob"].all() and (info["step"] == 1).all()
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((2, 2), np.float32))
    before = obs.copy()
    obs, info = vec.reset(options={"reset_mask": np.array([False, True, False])})
    assert info["_step"].tolist() == [False, True, False]
    assert np.array_equal(obs[[0, 2]], before[[0, 2]])


def test_vector_env_matches_single_envs_in_fp32(checkpoint):
    """N worlds in one batch = N single envs with seeds s + i, across NEXT_STEP autoresets."""
    n, steps, limit = 3, 7, 3
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n, 2)).astype(np.float32)
    vec = gym.make_vec("DiffusionWorld-v0", num_envs=n, checkpoint=str(checkpoint), bf16=False, max_episode_steps=limit)
    obs, _ = vec.reset(seed=10)
    vec_frames, vec_rewards = [obs], []
    for t in range(steps):
        obs, rewards, *_ = vec.step(actions[t])
        vec_frames.append(obs)
        vec_rewards.append(rewards)
    vec_frames, vec_rewards = np.stack(vec_frames, 1), np.stack(vec_rewards, 1)
    for i in range(n):
        single = DiffusionWorldEnv(checkpoint, bf16=False, max_episode_steps=limit)
        obs, _ = single.reset(seed=10 + i)
        frames, rewards, done = [obs], [], False
        for t in range(steps):
            if done:  # NEXT_STEP: this step resets and ignores the action
                (obs, _), reward, done = single.reset(), 0.0, False
            else:
                obs, reward, terminated, truncated, _ = single.step(actions[t, i])
                done = terminated or truncated
            frames.append(obs)
            rewards.append(reward)
        assert np.array_equal(np.stack(frames), vec_frames[i])
        np.testing.assert_allclose(rewards, vec_rewards[i], rtol=1e-5, atol=1e-6)


def test_stable_baselines3_checker_and_ppo(checkpoint):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("DiffusionWorld-v0", checkpoint=str(checkpoint), max_episode_steps=16)
    sb3_check_env(env)
    model = PPO("CnnPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=192)
    assert model.num_timesteps == 192
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))


def test_readme_env_examples_run_as_written():
    """The README's env examples, exactly as written (the shipped model), and the info keys it prints are the env's."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The world model as an environment")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 4
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(block, namespace)
        if i == 1:
            assert namespace["obs"].shape == (10,) and namespace["env"].observation_space.shape == (10,)
    assert namespace["frame"].shape == (256, 256, 3) and namespace["obs"].shape == (8, 64, 64, 3)
    printed = ast.literal_eval(re.search(r"print\(sorted\(info\)\) +# (\[.*?\])", blocks[0]).group(1))
    env = gym.make("DiffusionWorld-v0", checkpoint="pretrained/reacher.pt")
    _, reset_info = env.reset(seed=0)
    assert set(reset_info) == {"step", "state"}, "reset: the step and the start state, as the README says"
    assert sorted(env.step(env.action_space.sample())[4]) == printed


def test_without_a_checkpoint_the_env_names_the_shipped_one(monkeypatch):
    monkeypatch.delenv("DIFFUSION_WORLD_CHECKPOINT", raising=False)
    with pytest.raises(ValueError, match="ships one for reacher: checkpoint='.*pretrained/reacher.pt'") as refused:
        gym.make("DiffusionWorld-v0")
    shipped = re.search(r"checkpoint='(.*?)'", str(refused.value)).group(1)
    assert Path(shipped).is_absolute() and Path(shipped).exists()
    with pytest.raises(FileNotFoundError, match="ships a reacher model: pretrained/reacher.pt"):
        gym.make("DiffusionWorld-v0", checkpoint="runs/reacher/model.pt")


def test_imagine_tool_writes_a_video(checkpoint, tmp_path):
    out = tmp_path / "imagined.mp4"
    run_tool("imagine.py", f"checkpoint={checkpoint}", "policy=random", "steps=6", "scale=2", f"out={out}")
    video = iio.imread(out)
    # the reset frame, then one per step until termination (this tiny model's head is near 0.5) or step 6
    assert 2 <= video.shape[0] <= 7 and video.shape[1:] == (128, 128, 3)
    run_tool("imagine.py", f"checkpoint={checkpoint}", "policy=zero", "steps=2", "scale=1", f"out={out}")
    refused = run_tool("imagine.py", f"checkpoint={checkpoint}", "policy=expert", f"out={out}", check=False)
    assert refused.returncode != 0 and "does not imagine (no state track)" in refused.stderr
    run_tool("imagine.py", "checkpoint=pretrained/reacher.pt", "policy=expert", "steps=3", "scale=1", f"out={out}")  # on the shadow
    assert iio.imread(out).shape[0] == 4


@pytest.mark.slow
def test_a_compiled_world_imagines_what_the_eager_one_does(checkpoint):
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2)).astype(np.float32)
    eager = rollout(DiffusionWorldEnv(checkpoint, bf16=False), 0, actions)
    compiled = rollout(DiffusionWorldEnv(checkpoint, bf16=False, compile=True), 0, actions)
    assert np.abs(eager.astype(int) - compiled.astype(int)).max() <= 1, "the same frames up to fp32 rounding"
