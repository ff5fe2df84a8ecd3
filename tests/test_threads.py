"""The thread policy: stages of small operations run on one thread (a shared CPU does not stall
them), and give every thread back afterwards."""

import torch

from envs import get_task, make_task_env
from envs.mujoco.observations import StateObserver
from worldmodel.planning import PlannerConfig, StateScoring, make_planner, run_protocol
from worldmodel.threads import small_ops
from worldmodel.training.dynamics import train_dynamics
from worldmodel.world_model import WorldModel


def test_small_ops_runs_on_one_thread_and_restores_the_count():
    torch.set_num_threads(2)
    with small_ops():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_the_state_track_and_planning_in_states_run_on_one_thread(state_checkpoint, reacher_file, monkeypatch):
    torch.set_num_threads(2)
    dynamics = WorldModel.load(state_checkpoint).dynamics.requires_grad_(True)
    seen = []
    loss = type(dynamics).loss
    monkeypatch.setattr(type(dynamics), "loss", lambda self, *a: seen.append(torch.get_num_threads()) or loss(self, *a))
    train_dynamics(dynamics, reacher_file, [0, 1], steps=2, batch_size=4, horizon=4, lr=1e-3, seed=0, progress=False)
    assert seen == [1, 1] and torch.get_num_threads() == 2

    preset = get_task("reacher", episode_steps=3)
    env = make_task_env(preset)
    planner = make_planner("icem", env.action_space.low, env.action_space.high, PlannerConfig(horizon=2, samples=8, iterations=1, elites=2))
    plan = planner.plan
    planned = []
    monkeypatch.setattr(planner, "plan", lambda score, rng: planned.append(torch.get_num_threads()) or plan(score, rng))
    observer = StateObserver(preset)
    for scoring, threads in ((StateScoring(observer, None, 0.0), 1), (None, 2)):
        planned.clear()
        run_protocol(None, env, planner, "reward", ["oracle"], 1, 0, 3, scoring=scoring)
        assert planned and set(planned) == {threads}  # frames (the denoiser's large operations) keep every thread
    observer.close()
    env.close()
    assert torch.get_num_threads() == 2
