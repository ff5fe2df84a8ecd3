"""The extension points of docs/architecture.md, each exercised by adding a toy one: a denoiser, a
sampler, a planner (registries) and a task defined by its config file alone."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import CONFIGS, run_tool, tiny_config
from envs import TaskPreset, get_task, make_task_env
from worldmodel.data import RolloutReader
from worldmodel.diffusion import SAMPLERS
from worldmodel.models import DENOISERS
from worldmodel.planning import PLANNERS, GaussianPlanner, PlannerConfig, make_planner
from worldmodel.world_model import WorldModel


class ToyDenoiser(nn.Module):
    """A per-pixel linear map of the last frame, shifted by the last action: the smallest network
    that follows the denoiser protocol."""

    def __init__(self, action_space, context, target, **unused):
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)
        self.action = nn.Linear(len(action_space["low"]), 3)

    def forward(self, x, c_noise, actions, outputs_from=0):
        out = torch.zeros_like(x)
        out[:, -1] = self.mix(x[:, -1]) + self.action(actions[:, -1])[:, :, None, None]
        return out


def test_a_new_denoiser_is_one_registered_builder(reacher_file, tmp_path, monkeypatch, fresh_accelerate_state):
    """Written to the documented protocol, it trains and imagines under the default config (state track, pose maps) too."""
    from worldmodel.training.trainer import train

    monkeypatch.setitem(DENOISERS._items, "toy", ToyDenoiser)
    for dynamics in ("state_mlp", "none"):
        path = train(tiny_config(reacher_file, tmp_path / dynamics, dynamics=dynamics, **{"model.architecture": "toy", "steps": 2}))
        wm = WorldModel.load(path, bf16=False)
        assert isinstance(wm.denoiser, ToyDenoiser) and wm.spec.denoiser["architecture"] == "toy"
        frames, actions, states = wm.random_start(2, np.random.default_rng(0))
        out = wm.imagine(frames, actions, torch.zeros(2, 3, 2), context_states=states)
        assert out.frames.shape == (2, 3, 64, 64, 3) and (out.states is None) == (dynamics == "none")


def test_a_new_sampler_is_one_registered_function(checkpoint, monkeypatch):
    calls = []

    def one_shot(denoise, x, sigmas, cfg, generator=None):
        """Jumps straight to the clean estimate at the first noise level: one network call."""
        calls.append(len(sigmas))
        return denoise(x, sigmas[0])

    monkeypatch.setitem(SAMPLERS._items, "one_shot", one_shot)
    wm = WorldModel.load(checkpoint, bf16=False, method="one_shot", steps=4)
    frames, actions, _ = wm.random_start(1, np.random.default_rng(0))
    out = wm.imagine(frames, actions, torch.zeros(1, 2, 2))
    assert out.frames.shape == (1, 2, 64, 64, 3) and calls == [5, 5]
    with pytest.raises(ValueError, match="Unknown sampler 'two_shot'"):
        WorldModel.load(checkpoint, method="two_shot")


def test_a_new_planner_is_one_registered_class(monkeypatch):
    class RandomShooting(GaussianPlanner):
        """Annealed random search: the best candidate of each iteration is the next mean, the spread halves."""

        def _refit(self, candidates, scores, std):
            return candidates[np.argmax(scores)], std / 2

    monkeypatch.setitem(PLANNERS._items, "shooting", RandomShooting)
    target = np.array([0.3, -0.5], np.float32)
    planner = make_planner("shooting", -np.ones(2), np.ones(2), PlannerConfig(horizon=2, samples=256, iterations=4, elites=1))
    plan = planner.plan(lambda a: -((a - target) ** 2).sum((1, 2)), np.random.default_rng(0))
    np.testing.assert_allclose(plan, np.broadcast_to(target, (2, 2)), atol=0.15)


def test_presets_round_trip_through_their_description():
    for name in ("reacher", "pusher"):
        preset = get_task(name, episode_steps=7, action_repeat=2)
        assert TaskPreset.from_dict(json.loads(json.dumps(preset.describe()))) == preset
    with pytest.raises(ValueError, match="needs \\['camera', 'env_id'\\]"):
        get_task({"name": "walker", "episode_steps": 10})
    with pytest.raises(ValueError, match="success test needs"):
        get_task(
            {
                "name": "arm",
                "env_id": "Reacher-v5",
                "camera": {"distance": 1, "elevation": -90, "azimuth": 0},
                "episode_steps": 5,
                "success_target": "target",
            }
        )


@pytest.mark.slow
def test_a_new_task_is_one_config_file(tmp_path):
    """HalfCheetah seen by a camera that tracks its torso, InvertedPendulum with its termination:
    recorded by the tool from their configs/task/*.yaml alone; the file carries the whole task."""
    cheetah = tmp_path / "cheetah.h5"
    run_tool("record_rollouts.py", "task=half_cheetah", "policy=random", "episodes=2", "task.episode_steps=30", f"out={cheetah}")
    with RolloutReader(cheetah) as reader:
        preset = reader.metadata["task_preset"]
        assert preset["env_id"] == "HalfCheetah-v5" and preset["camera"]["track_body"] == "torso"
        frames, qpos = reader.frames(0), reader.frames(0, name="qpos")
    assert abs(qpos[-1, 0] - qpos[0, 0]) > 0.05, "the cheetah moved along x"
    # The camera follows the torso: the picture does not empty out as it runs.
    assert frames.std(axis=(1, 2, 3)).min() > 5
    env = make_task_env(get_task(preset))
    assert env.success_distance is None and not env.reset(seed=0)[1]["success"]

    pendulum = tmp_path / "pendulum.h5"
    run_tool("record_rollouts.py", "task=inverted_pendulum", "policy=random", "episodes=3", f"out={pendulum}")
    with RolloutReader(pendulum) as reader:
        assert (reader.lengths < 100).all(), "random actions drop the pole before the 100-step limit"
        assert all(reader.steps("terminated", e)[-1] for e in range(3))
    defined = OmegaConf.to_container(OmegaConf.load(CONFIGS / "task/inverted_pendulum.yaml"))
    assert get_task(defined).describe() == get_task(reader.metadata["task_preset"]).describe()


def test_a_task_without_an_expert_says_what_to_record_with(tmp_path):
    result = run_tool("record_rollouts.py", "task=half_cheetah", "episodes=1", f"out={tmp_path / 'x.h5'}", check=False)
    assert result.returncode != 0 and "No expert for task 'half_cheetah'" in result.stderr and "policy=random" in result.stderr
