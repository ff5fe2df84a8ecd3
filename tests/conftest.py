"""Shared fixtures: small real recordings, made once per test session."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from envs import get_task
from envs.recording import PolicySpec, record_rollouts

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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


@pytest.fixture(scope="session")
def reacher_file(tmp_path_factory):
    """6 reacher episodes of 12 steps (13 frames each), mixed policies."""
    return record(tmp_path_factory.mktemp("data") / "reacher.h5", episodes=6)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
