"""The source task's own observation from a simulator state (envs/mujoco/observations.py), and
DiffusionWorld-v0 showing it: a policy trained on the real env runs unchanged in imagination."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.mujoco.observations import StateObserver

PRETRAINED = "pretrained/reacher.pt"


def state_of(info) -> np.ndarray:
    return np.concatenate([info["qpos"], info["qvel"]])


@pytest.mark.parametrize("task", ["reacher", "pusher", "fetch_push"])
def test_a_real_state_gives_exactly_the_real_observation(task):
    real = envs.make_task_env(task)
    observer = StateObserver(envs.get_task(task))
    _, info = real.reset(seed=3)
    goal = real.unwrapped.goal.copy() if observer.goal_based else None
    assert observer.observation_space == real.env.observation_space
    np.testing.assert_array_equal(observer.flat(observer.observe(state_of(info), goal)), info["state"])  # reset: exactly
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, _, _, _, info = real.step(rng.uniform(real.action_space.low, real.action_space.high))
        obs = observer.observe(state_of(info), goal)
        if observer.goal_based:
            assert set(obs) == {"observation", "achieved_goal", "desired_goal"} and obs in observer.observation_space
            np.testing.assert_array_equal(observer.flat(obs), info["state"])  # Fetch observes after its own forward pass
            continue
        # Reacher and Pusher read body positions that MuJoCo computed before the step's last substep;
        # with the kinematics brought up to date they give exactly the observer's answer.
        np.testing.assert_allclose(obs, info["state"], atol=0.01)
        mujoco.mj_forward(real.unwrapped.model, real.unwrapped.data)
        np.testing.assert_array_equal(obs, real.unwrapped._get_obs())
    real.close()
    observer.close()


@pytest.mark.parametrize("task", ["reacher", "pusher", "fetch_push"])
def test_rewards_and_goal_points_read_from_states_are_the_real_envs(task):
    real = envs.make_task_env(task)
    observer = StateObserver(envs.get_task(task))
    real.reset(seed=1)
    rng = np.random.default_rng(0)
    states, actions, rewards, points = [], [], [], []
    for _ in range(10):
        actions.append(rng.uniform(real.action_space.low, real.action_space.high))
        _, reward, _, _, info = real.step(actions[-1])
        states.append(state_of(info))
        rewards.append(reward)
        mujoco.mj_forward(real.unwrapped.model, real.unwrapped.data)  # body positions after the last substep
        points.append(real.goal_point())
    states, actions = np.array(states), np.array(actions)
    # Pusher's reward reads body positions from before the step's last substep (see above): ~1 mm off.
    np.testing.assert_allclose(observer.rewards(states, actions, real.episode_goal()), rewards, atol=0.01 if task == "pusher" else 1e-5)
    np.testing.assert_allclose(observer.goal_points(states), points, atol=1e-12)
    if not observer.goal_based:  # the batched kinematic readout is the env's own reward code, state by state
        own = []
        for state, action in zip(states, actions):
            observer.observe(state)  # the observer's copy put in the state, its kinematics up to date
            own.append(observer._env._get_rew(action)[0])
        np.testing.assert_allclose(observer.rewards(states, actions), own, atol=1e-12)
    with pytest.raises(ValueError, match="one per state"):
        observer.rewards(states, actions[:-1], real.episode_goal())
    real.close()
    observer.close()


def test_the_shadow_puts_privileged_policies_in_the_observed_state():
    from envs.mujoco.policies import make_policy

    real = envs.make_task_env("reacher")
    observer = StateObserver(envs.get_task("reacher"))
    on_real, on_shadow = make_policy("expert", real), make_policy("expert", observer.shadow)
    _, info = real.reset(seed=5)
    for _ in range(5):
        observer.observe(state_of(info))
        np.testing.assert_allclose(on_shadow.act(None, {}), on_real.act(None, {}), atol=1e-6)
        _, _, _, _, info = real.step(on_real.act(None, {}))


def test_goal_based_observations_need_the_goal():
    observer = StateObserver(envs.get_task("fetch_push"))
    with pytest.raises(ValueError, match="goal"):
        observer.observe(np.zeros(observer.nq + observer.nv))
    with pytest.raises(ValueError, match="qpos, qvel"):
        observer.observe(np.zeros(3), np.zeros(3))


@pytest.mark.parametrize("observation", ["state", "both"])
def test_state_observations_from_imagination_pass_the_checker(observation):
    env = gym.make("DiffusionWorld-v0", checkpoint=PRETRAINED, observation=observation)
    check_env(env.unwrapped, skip_render_check=True)
    real = envs.make_task_env("reacher")
    obs, info = env.reset(seed=0)
    for _ in range(3):
        obs, _, _, _, info = env.step(env.action_space.sample())
    state = obs if observation == "state" else obs["state"]
    assert env.observation_space == (
        real.env.observation_space
        if observation == "state"
        else gym.spaces.Dict({"pixels": real.observation_space, "state": real.env.observation_space})
    )
    observer = StateObserver(envs.get_task("reacher"))
    np.testing.assert_allclose(state, observer.observe(info["state"]), atol=1e-6)  # the observation of the imagined state
    real.close()


def test_vector_env_batches_state_observations():
    vec = gym.make_vec("DiffusionWorld-v0", num_envs=3, checkpoint=PRETRAINED, observation="both")
    obs, info = vec.reset(seed=0)
    assert obs["state"].shape == (3, 10) and obs["pixels"].shape == (3, 64, 64, 3) and info["state"].shape == (3, 8)
    obs, *_ = vec.step(vec.action_space.sample())
    assert obs in vec.observation_space
    single = gym.make("DiffusionWorld-v0", checkpoint=PRETRAINED, observation="state")
    np.testing.assert_array_equal(single.reset(seed=1)[0], vec.reset(seed=0)[0]["state"][1])  # world i = a single env seeded 0 + i
    vec.close()


def test_a_model_without_a_state_track_refuses_state_observations(checkpoint):
    with pytest.raises(ValueError, match="no state track.*dynamics=state_mlp"):
        gym.make("DiffusionWorld-v0", checkpoint=str(checkpoint), observation="state")
    with pytest.raises(ValueError, match="observation must be one of"):
        gym.make("DiffusionWorld-v0", checkpoint=str(checkpoint), observation="frames")


def test_an_sb3_policy_trained_on_the_real_env_runs_unchanged(tmp_path):
    from stable_baselines3 import SAC

    agent = SAC("MlpPolicy", gym.make("Reacher-v5"), learning_starts=32, batch_size=32, seed=0).learn(64)
    agent.save(tmp_path / "sac")
    agent = SAC.load(tmp_path / "sac")
    env = gym.make("DiffusionWorld-v0", checkpoint=PRETRAINED, observation="state")
    obs, _ = env.reset(seed=0)
    total = 0.0
    for _ in range(5):
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
    assert np.isfinite(total) and obs.shape == (10,)


def test_sb3_learns_in_imagination_through_the_native_vector_env(state_checkpoint):
    from stable_baselines3 import SAC

    from envs.sb3 import imagined_vec_env

    env = imagined_vec_env(str(state_checkpoint), num_envs=3, observation="state", bf16=False)
    env.seed(0)
    obs = env.reset()
    assert obs.shape == (3, 10)
    steps, ends = 0, 0
    while ends == 0:  # to the first episode end: SB3 gets the reset observation and the last one in info
        obs, rewards, dones, infos = env.step(np.stack([env.action_space.sample() for _ in range(3)]))
        steps += 1
        for done, info in zip(dones, infos):
            if done:
                ends += 1
                assert info["terminal_observation"].shape == (10,)
                assert info["TimeLimit.truncated"] == (steps == env.env.max_episode_steps)  # else the head predicted termination
    assert obs.shape == (3, 10) and not env.env._autoreset.any()  # finished worlds were reset within the step
    agent = SAC("MlpPolicy", env, learning_starts=8, batch_size=8, seed=0, gradient_steps=-1).learn(30)
    assert agent.num_timesteps >= 30


@pytest.mark.slow
def test_train_policies_in_imagination_scores_them_in_mujoco(state_checkpoint, tmp_path):
    from conftest import run_tool

    zoo = tmp_path / "zoo"
    result = run_tool(
        "train_policies.py",
        "task=reacher",
        "task.episode_steps=8",
        f"out={zoo}",
        f"imagination.checkpoint={state_checkpoint}",
        "imagination.num_envs=2",
        "imagination.bf16=false",
        "state.budgets=[24]",
        "pixels.budgets=[]",
        "+state.hyperparameters.learning_starts=8",
        "+state.hyperparameters.batch_size=8",
        "score_episodes=1",
    )
    assert (zoo / "sac_state_24.zip").is_file() and "| sac_state_24 | 24 |" in result.stdout
