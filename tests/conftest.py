"""Shared fixtures: small real recordings, made once per test session."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from envs import get_task
from envs.mujoco.recording import PolicySpec, record_rollouts

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def record(path, task="reacher", policy="mixture", episodes=4, seed=0, episode_steps=12, workers=1, append=False, **task_kw):
    """Records a small file and returns its path."""
    preset = get_task(task, episode_steps=episode_steps, **task_kw)
    policies = {
        "mixture": [PolicySpec("expert"), PolicySpec("noisy_expert", eps=0.5), PolicySpec("random")],
        "mixture_tool": [PolicySpec(**c) for c in OmegaConf.load(CONFIGS / "policy/mixture.yaml").components],
    }.get(policy, [PolicySpec(policy)])
    for _ in record_rollouts(preset, policies, episodes, path, seed=seed, workers=workers, append=append):
        pass
    return path


def tiny_config(data, run_dir, **overrides):
    """The resolved config tools/train.py would pass, for a very small model."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    defaults = {
        "steps": 6,
        "batch_size": 4,
        "model.channels": "[8,16]",
        "model.blocks": 1,
        "model.cond_dim": 32,
        "model.reward_channels": 8,
        "log_every": 2,
        "save_every": 3,
        "val_every": 0,
        "start_bank_size": 4,
        "window.val_fraction": 0.25,
        "window.context": 4,
        "mixed_precision": "no",
        "device": "cpu",
    }
    dynamics = overrides.pop("dynamics", "state_mlp")
    if dynamics != "none":  # the state track's own stage, kept short
        defaults |= {"dynamics.steps": 40, "dynamics.batch_size": 16, "dynamics.horizon": 6}
    group = [f"dynamics={dynamics}"] + ([f"model={overrides.pop('model')}"] if "model" in overrides else [])
    args = [f"data={data}", f"run_dir={run_dir}", *group] + [f"{k}={v}" for k, v in {**defaults, **overrides}.items()]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose("train", overrides=args)
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    plain.pop("task", None)
    plain["expect"] = {}
    return plain


def run_tool(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs tools/<tool> as a user would (hydra overrides as arguments), from the repository root."""
    result = subprocess.run([sys.executable, f"tools/{tool}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def reacher_file(tmp_path_factory):
    """6 reacher episodes of 12 steps (13 frames each), mixed policies."""
    return record(tmp_path_factory.mktemp("data") / "reacher.h5", episodes=6)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-global state (mixed precision included); tests train with several."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# a search small enough for tests that only need tools/plan.py to run end to end
SMALL_SEARCH = ("replan_every=3", "search.horizon=3", "search.samples=4", "search.iterations=1", "search.elites=2")


def tiny_checkpoint(data, run_dir, **overrides):
    """A tiny framestack model trained briefly (20 steps) on `data`: real weights, fast to sample."""
    from accelerate.state import AcceleratorState

    from worldmodel.training.trainer import train

    path = train(tiny_config(data, run_dir, model="framestack", steps=20, save_every=20, start_bank_size=8, **overrides))
    AcceleratorState._reset_state()
    return path


@pytest.fixture(scope="session")
def checkpoint(reacher_file, tmp_path_factory):
    """The tiny model without a state track, on `reacher_file`."""
    return tiny_checkpoint(reacher_file, tmp_path_factory.mktemp("run") / "tiny", dynamics="none")


@pytest.fixture(scope="session")
def state_checkpoint(reacher_file, tmp_path_factory):
    """The same with the default state track and pose maps: frames drawn from a learned state."""
    return tiny_checkpoint(reacher_file, tmp_path_factory.mktemp("run") / "state")
