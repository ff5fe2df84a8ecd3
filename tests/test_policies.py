import numpy as np
import pytest

from envs import get_task, make_task_env
from envs.mujoco.policies import make_policy


def run_episodes(task, policy_name, seeds, eps=None, **task_kw):
    env = make_task_env(task, frame_size=(16, 16), **task_kw)
    policy = make_policy(policy_name, env, eps)
    successes = []
    for seed in seeds:
        _, info = env.reset(seed=seed)
        policy.reset(np.random.default_rng(seed))
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(policy.act(info["state"], info))
            done = terminated or truncated
        successes.append(info["success"])
    return np.mean(successes)


def test_reacher_expert_reaches_the_target():
    assert run_episodes("reacher", "expert", range(20)) >= 0.95


def test_random_and_zero_policies_rarely_succeed():
    assert run_episodes("reacher", "random", range(10)) <= 0.2
    assert run_episodes("reacher", "zero", range(10)) <= 0.2


@pytest.mark.slow
def test_pusher_expert_pushes_the_object_onto_the_goal():
    assert run_episodes("pusher", "expert", range(20)) >= 0.7


@pytest.mark.slow
def test_pusher_play_pushes_towards_its_decoy_as_deep_as_it_drew():
    """Play data's two knobs do what the state track needs from them: a full-depth push takes the
    object to the decoy point, not the goal; resting against it (depth 0) moves it about 1 cm."""
    env = make_task_env("pusher", frame_size=(16, 16))
    policy = make_policy("play", env)
    for depth in (1.0, 0.0):
        _, info = env.reset(seed=3)
        start = env.data.body("object").xpos[:2].copy()
        decoy = start + np.array([0.15, 0.0])  # the goal lies the other way
        policy.draw = lambda rng, depth=depth: (depth, 0.0, decoy)
        policy.reset(np.random.default_rng(0))
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(policy.act(info["state"], info))
            done = terminated or truncated
        end = env.data.body("object").xpos[:2]
        if depth == 1.0:
            assert np.linalg.norm(end - decoy) < 0.02 and not info["success"]
        else:
            assert np.linalg.norm(end - start) < 0.03


def test_noisy_expert_degrades_with_eps():
    assert run_episodes("reacher", "noisy_expert", range(10), eps=0.0) >= 0.9
    assert run_episodes("reacher", "noisy_expert", range(10), eps=1.0) <= 0.2


@pytest.mark.parametrize("task", ["reacher", "pusher"])
def test_policies_are_deterministic_given_their_generator(task):
    env = make_task_env(task, frame_size=(16, 16))
    policy = make_policy("noisy_expert", env, eps=0.5)
    runs = []
    for _ in range(2):
        _, info = env.reset(seed=3)
        policy.reset(np.random.default_rng(3))
        actions = []
        for _ in range(5):
            action = policy.act(info["state"], info)
            assert env.action_space.contains(action)
            actions.append(action)
            info = env.step(action)[-1]
        runs.append(np.stack(actions))
    assert np.array_equal(*runs)


def test_bad_policy_requests_are_named():
    env = make_task_env("reacher", frame_size=(16, 16))
    with pytest.raises(ValueError, match="Unknown policy 'greedy'"):
        make_policy("greedy", env)
    with pytest.raises(ValueError, match="eps in \\[0, 1\\]"):
        make_policy("noisy_expert", env, eps=1.5)
    with pytest.raises(ValueError, match="needs eps"):
        make_policy("noisy_expert", env)
    pendulum = make_task_env(
        get_task(
            {
                "name": "pendulum",
                "env_id": "InvertedPendulum-v5",
                "episode_steps": 10,
                "frame_size": [16, 16],
                "camera": {"distance": 1.6, "elevation": 0.0, "azimuth": 90.0},
            }
        )
    )
    with pytest.raises(ValueError, match="No expert for task 'pendulum'"):
        make_policy("expert", pendulum)
    with pytest.raises(ValueError, match="No play policy for task 'reacher'"):
        make_policy("play", env)
