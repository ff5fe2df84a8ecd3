"""Any policy in: scripted names, module:attribute references and Stable-Baselines3 checkpoints;
closed-loop imagination for pixel policies; the policy zoo tool."""

import json
import os
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import run_tool
from envs import get_task, make_task_env
from envs.mujoco.policies import build_policy
from envs.mujoco.recording import record_episode
from envs.policy_zoo import read_index, score_members, train_snapshots, write_index
from worldmodel.data import RolloutReader
from worldmodel.evaluation.policy_eval import run_closed_loop
from worldmodel.policy import FunctionPolicy, Policy, load_policy
from worldmodel.world_model import Step, Window

USER_POLICIES = textwrap.dedent('''
    import numpy as np
    from worldmodel.policy import Policy

    def push(obs, info):
        return np.array([1.0, -1.0], np.float32)

    class Brightness(Policy):
        """Turns the shoulder by how bright its frame is: a pixel policy whose actions depend on what it sees."""
        observes = "pixels"

        def act(self, obs, info):
            return np.array([obs.mean() / 127.5 - 1.0, 0.0], np.float32)

    def make_brightness():
        return Brightness()

    def wrong_shape(obs, info):
        return np.zeros(3)

    class Duck:
        """Not a Policy subclass: reset, act and observes are enough."""
        observes = "pixels"

        def reset(self, rng):
            pass

        def act(self, obs, info):
            return np.zeros(2, np.float32)
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_policies.py").write_text(USER_POLICIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))  # for the tools
    yield "user_policies"
    sys.modules.pop("user_policies", None)


def test_module_attribute_policies_load_as_functions_classes_and_factories(user_module):
    push = load_policy(f"{user_module}:push")
    assert isinstance(push, FunctionPolicy) and push.observes == "state" and push.name == f"{user_module}:push"
    for reference in (f"{user_module}:Brightness", f"{user_module}:make_brightness"):
        policy = load_policy(reference)
        assert isinstance(policy, Policy) and policy.observes == "pixels" and policy.name == reference
    env = make_task_env("reacher", episode_steps=5)
    episode = record_episode(env, load_policy(f"{user_module}:Brightness"), seed=0)
    # the policy acted on the rendered frame it was shown before each step
    expected = np.stack([[f.mean() / 127.5 - 1.0, 0.0] for f in episode.frames[:-1]]).astype(np.float32)
    np.testing.assert_allclose(episode.actions, expected, rtol=1e-6)
    episode = record_episode(env, load_policy(f"{user_module}:push"), seed=0)
    assert (episode.actions == [1.0, -1.0]).all() and episode.policy == {"name": f"{user_module}:push"}
    duck = load_policy(f"{user_module}:Duck")
    assert duck.observes == "pixels" and record_episode(env, duck, seed=0).policy == {"name": f"{user_module}:Duck"}


def test_bad_policy_references_are_refused_clearly(user_module):
    env = make_task_env("reacher", episode_steps=5)
    for reference, message in [
        ("no_such_module:policy", "cannot import 'no_such_module'"),
        (f"{user_module}:missing", "has no attribute 'missing'"),
        ("sb3:XYZ:a.zip", "unknown Stable-Baselines3 algorithm"),
        ("sb3:PPO:no/such.zip", "no such checkpoint"),
        ("sb3:PPO", "sb3:ALGO:path.zip"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            load_policy(reference)
    with pytest.raises(ValueError, match="eps applies to noisy_expert only"):
        build_policy(f"{user_module}:push", env, eps=0.3)
    with pytest.raises(ValueError, match=f"policy '{user_module}:wrong_shape' returned \\(3,\\) action"):
        record_episode(env, load_policy(f"{user_module}:wrong_shape"), seed=0)


def test_sb3_snapshots_load_check_their_task_and_act(tmp_path):
    preset = get_task("reacher", episode_steps=8)
    tiny = {"n_steps": 32, "batch_size": 16, "n_epochs": 1}
    members = train_snapshots(preset, "state", [32, 64], tmp_path / "zoo", hyperparameters=tiny)
    members += train_snapshots(preset, "pixels", [32], tmp_path / "zoo", hyperparameters=tiny)
    assert [(m.observes, m.steps) for m in members] == [("state", 32), ("state", 64), ("pixels", 32)]
    assert all(m.path.is_file() for m in members)
    env = make_task_env(preset)
    state, pixels = (build_policy(members[i].reference, env) for i in (1, 2))
    assert (state.observes, pixels.observes) == ("state", "pixels")
    for policy in (state, pixels):
        episode = record_episode(env, policy, seed=0)
        assert episode.actions.shape == (8, 2) and np.isfinite(episode.actions).all()
    # a reacher state policy cannot drive pusher (23-dim observations, 7 joints)
    with pytest.raises(ValueError, match="trained on state observations of shape \\(10,\\).*gives \\(23,\\)"):
        build_policy(members[0].reference, make_task_env("pusher", frame_size=(16, 16)))
    scores = score_members(preset, members, episodes=2)
    write_index(tmp_path / "zoo", members, scores, "reacher")
    assert read_index(tmp_path / "zoo") == [{"name": m.reference, "label": m.label} for m in members]
    assert [m.label for m in members] == ["ppo_state_32", "ppo_state_64", "ppo_pixels_32"]


class CountingWorld:
    """A stand-in world model with known dynamics: each imagined frame is the last one plus the
    action's first component (in grey levels), and the reward is the new frame's grey level."""

    context, state_shape = 2, None
    action_space = {"low": [-100.0], "high": [100.0], "shape": [1]}

    def window(self, frames, actions, states=None):
        return Window(frames, actions)

    def step(self, window, actions, generator=None):
        frame = (window.last_frame.float() + actions[:, :1, None, None]).clamp(0, 255).to(torch.uint8)
        return window.slide(frame, actions), Step(frame, frame.float().mean((1, 2, 3)), torch.zeros(len(frame)))


class AddTwo(Policy):
    """A pixel policy that remembers what it saw: it adds 2 grey levels after seeing a frame brighter than the last."""

    observes = "pixels"

    def reset(self, rng):
        self.seen = []

    def act(self, obs, info):
        self.seen.append(int(obs[0, 0, 0]))
        return np.array([2.0 if len(self.seen) > 1 and self.seen[-1] > self.seen[-2] else 1.0], np.float32)


def test_closed_loop_feeds_the_policy_its_imagined_frames():
    from worldmodel.data.format import Episode

    real = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (10, 10, 50, 50, 50)])  # what MuJoCo showed
    episode = Episode(
        frames=real,
        actions=np.zeros((4, 1), np.float32),
        rewards=np.zeros(4, np.float32),
        terminated=np.zeros(4, bool),
        truncated=np.zeros(4, bool),
        success=np.zeros(4, bool),
        qpos=np.zeros((5, 1)),
        qvel=np.zeros((5, 1)),
        seed=0,
    )
    policies = [AddTwo()]
    policies[0].reset(None)
    world = CountingWorld()
    window = world.window(torch.from_numpy(real[None, :2]), torch.from_numpy(episode.actions[None, :1]))
    out = run_closed_loop(world, policies, window, steps=3)
    # warm-up on real frame 0 (10); then it sees real frame 1 (10: no rise -> +1), imagined 11 (rise -> +2), 13, 15
    assert policies[0].seen == [10, 10, 11, 13]
    assert out.actions[0, :, 0].tolist() == [1.0, 2.0, 2.0] and out.rewards[0].tolist() == [11.0, 13.0, 15.0]
    assert out.success_prob is None and out.last_state is None


@pytest.mark.slow
def test_evaluate_scores_scripted_callable_and_sb3_policies_side_by_side(state_checkpoint, user_module, tmp_path):
    zoo = tmp_path / "zoo"
    run_tool(
        "train_policies.py",
        "task=reacher",
        "task.episode_steps=12",
        f"out={zoo}",
        "state.budgets=[40]",
        "pixels.budgets=[32]",
        "+state.hyperparameters.learning_starts=20",
        "+state.hyperparameters.batch_size=16",
        "pixels.hyperparameters.n_steps=32",
        "+pixels.hyperparameters.batch_size=16",
        "pixels.hyperparameters.n_epochs=1",
        "score_episodes=2",
    )
    out = tmp_path / "eval"
    result = run_tool(
        "evaluate.py",
        "mode=policies",
        f"checkpoint={state_checkpoint}",
        f"out={out}",
        "policy_episodes=2",
        "policy_episode_steps=8",
        f"policies=[expert,{{name: '{user_module}:Brightness', label: brightness}}]",
        f"zoo={zoo}",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loop"] == "closed" and {p["loop"] for p in metrics["policies"].values()} == {"closed"}
    for p in metrics["policies"].values():
        assert p["real_return_ci"][0] <= p["real_return"] <= p["real_return_ci"][1]
    assert "normalized_mmrv" in metrics and "| brightness | closed |" in result.stdout
    assert (out / "returns.png").is_file()
    # the same reference records rollouts
    data = tmp_path / "brightness.h5"
    run_tool(
        "record_rollouts.py",
        "task=reacher",
        "task.episode_steps=6",
        f'policy.components=[{{name: "{user_module}:Brightness"}}]',
        "episodes=2",
        f"out={data}",
    )
    with RolloutReader(data) as reader:
        assert reader.num_episodes == 2 and reader.metadata["policies"][0]["name"] == f"{user_module}:Brightness"
