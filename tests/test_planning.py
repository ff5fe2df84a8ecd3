"""Planners on toy problems whose optimum is known, and the world-model objectives."""

import json

import numpy as np
import pytest
import torch

from conftest import SMALL_SEARCH, run_tool
from worldmodel.planning import PlannerConfig, goal_distance, make_planner, predicted_return, state_goal_distance, state_return
from worldmodel.planning.icem import coloured_noise
from worldmodel.planning.objectives import _best_distance, blur
from worldmodel.world_model import WorldModel

LOW, HIGH = np.array([-1.0, -1.0]), np.array([1.0, 1.0])


def quadratic(target):
    """score = -squared distance of every step's action to target (H, A): the optimum is target clipped to the box."""
    return lambda actions: -((actions - target) ** 2).sum(axis=(1, 2))


@pytest.mark.parametrize("name", ["cem", "mppi", "icem"])
def test_planners_find_the_known_optimum(name):
    target = np.random.default_rng(0).uniform(-0.8, 0.8, (5, 2))
    # The target changes at random from step to step: so does iCEM's noise here (white, not its default brown).
    cfg = PlannerConfig(horizon=5, samples=256, iterations=8, elites=16, temperature=0.05, noise_beta=0.0)
    plan = make_planner(name, LOW, HIGH, cfg).plan(quadratic(target), np.random.default_rng(1))
    assert plan.shape == (5, 2) and np.abs(plan - target).max() < 0.1


@pytest.mark.parametrize("name", ["cem", "mppi", "icem"])
def test_optimum_outside_the_box_is_planned_on_its_bound(name):
    cfg = PlannerConfig(horizon=3, samples=128, iterations=8, elites=12, temperature=0.05)
    plan = make_planner(name, LOW, HIGH, cfg).plan(quadratic(np.full((3, 2), 3.0)), np.random.default_rng(0))
    assert (plan <= 1.0).all() and (plan > 0.85).all()  # iCEM returns its best sample, not the mean: a little noisier


def test_warm_start_shifts_the_plan_and_more_iterations_do_not_hurt():
    target = np.linspace(-0.5, 0.5, 8)[:, None].repeat(2, 1)
    planner = make_planner("cem", LOW, HIGH, PlannerConfig(horizon=8, samples=128, iterations=6, elites=12))
    plan = planner.plan(quadratic(target), np.random.default_rng(0))
    planner.shift(3)
    np.testing.assert_allclose(planner.mean[:5], plan[3:], atol=1e-6)
    assert (planner.mean[5:] == 0).all()
    short = make_planner("cem", LOW, HIGH, PlannerConfig(horizon=8, iterations=1)).plan(quadratic(target), np.random.default_rng(0))
    assert quadratic(target)(plan[None])[0] >= quadratic(target)(short[None])[0]


def test_coloured_noise_is_unit_variance_and_smoother_the_higher_its_exponent():
    lag1 = {}
    for beta in (0.0, 2.0):
        noise = coloured_noise(beta, (4000, 15, 2), np.random.default_rng(0))
        assert noise.shape == (4000, 15, 2)
        np.testing.assert_allclose(noise.std(axis=(0, 2)), 1.0, atol=0.03)  # at every step
        lag1[beta] = float((noise[:, 1:] * noise[:, :-1]).mean())
    assert abs(lag1[0.0]) < 0.1, "white noise: neighbouring steps uncorrelated"
    assert lag1[2.0] > 0.6, "brown noise: a torque held for several steps"


def test_icem_returns_the_best_sequence_it_scored_and_carries_its_elites_shifted_to_the_next_plan():
    target = np.linspace(-0.5, 0.5, 8)[:, None].repeat(2, 1)
    planner = make_planner("icem", LOW, HIGH, PlannerConfig(horizon=8, samples=64, iterations=4, elites=8, keep_elites=0.5))
    batches = []

    def score(actions):
        batches.append(actions.copy())
        return quadratic(target)(actions)

    plan = planner.plan(score, np.random.default_rng(0))
    scored = np.concatenate(batches)
    np.testing.assert_array_equal(plan, scored[np.argmax(score(scored))])
    assert [len(b) for b in batches[:3]] == [64, 51 + 4, 41 + 4], "the population shrinks by `decay`; 4 kept elites join it"
    last_elites = batches[-1][np.argsort(quadratic(target)(batches[-1]))[::-1][:4]]
    planner.shift(3)
    batches.clear()
    planner.plan(score, np.random.default_rng(1))
    carried = batches[0][-4:]
    np.testing.assert_array_equal(carried[:, :5], last_elites[:, 3:])
    assert (carried[:, 5:] == 0).all(), "shifted in: the middle of the action box"


def test_bad_planner_settings_are_refused():
    with pytest.raises(ValueError, match="Unknown planner"):
        make_planner("annealing", LOW, HIGH, PlannerConfig())
    with pytest.raises(ValueError, match="elites"):
        PlannerConfig(samples=8, elites=16)
    with pytest.raises(ValueError, match="finite"):
        make_planner("mppi", LOW, HIGH, PlannerConfig(samples=4, elites=2)).plan(
            lambda a: np.full(len(a), np.nan), np.random.default_rng(0)
        )


def test_world_model_objectives_score_candidates_in_one_batch(checkpoint):
    wm = WorldModel.load(checkpoint, bf16=False)
    window = wm.window(*wm.random_start(1, np.random.default_rng(0)))
    candidates = np.random.default_rng(0).uniform(-1, 1, (6, 3, 2)).astype(np.float32)
    returns = predicted_return(wm, window, torch.Generator().manual_seed(0))(candidates)
    again = predicted_return(wm, window, torch.Generator().manual_seed(0))(candidates)
    assert returns.shape == (6,) and np.array_equal(returns, again)
    goal = window.last_frame[0].numpy()
    distance = goal_distance(wm, window, goal, torch.Generator().manual_seed(0))(candidates)
    assert distance.shape == (6,) and (distance <= 0).all()
    with pytest.raises(ValueError, match="one world"):
        predicted_return(wm, wm.window(*wm.random_start(2, np.random.default_rng(0))), None)(candidates)


def test_blurred_goal_distance_keeps_falling_as_a_thin_bar_nears_its_goal():
    def bar(column: int) -> torch.Tensor:
        frame = torch.zeros(64, 64, 3, dtype=torch.uint8)
        frame[16:48, column : column + 2] = 255
        return frame

    goal, frames = bar(10), torch.stack([bar(c) for c in (26, 20, 16, 13, 10)])[:, None]  # 5 futures of 1 frame
    raw, blurred = _best_distance(frames, goal, 0.0), _best_distance(frames, goal, 3.0)
    assert raw[0] == raw[1] == raw[2] == raw[3] < raw[4] == 0, "raw pixels cannot tell how far off a non-overlapping bar is"
    assert (np.diff(blurred) > 0).all() and blurred[-1] == 0
    assert torch.allclose(blur(frames, 3.0).sum((-3, -2, -1)), frames.float().sum((-3, -2, -1)) / 255), "blurring keeps the mass"
    assert torch.equal(blur(frames, 0.0), frames.float() / 255)


def point_mass():
    """A known answer: the state is where summed actions put a point (states (N, H, 2)); reward = -its
    distance to (1, 0) - 0.5 |a|^2; the goal body is the point itself."""

    class Readout:
        def rewards(self, states, actions, goal=None):
            return -np.linalg.norm(states - [1.0, 0.0], axis=-1) - 0.5 * (actions**2).sum(-1)

        def goal_points(self, states):
            return states

    return (lambda actions: np.cumsum(actions, axis=1)), Readout()


def test_state_return_sums_the_rewards_read_from_rolled_out_states():
    rollout, readout = point_mass()
    actions = np.array([[[0.5, 0.0], [0.5, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    # point at (0.5, 0), (1, 0): -(0.5 + 0.125) - (0 + 0.125); (1, 0), (1, 0): -(0 + 0.5) - 0; at rest: -1 - 1
    np.testing.assert_allclose(state_return(rollout, readout)(actions), [-0.75, -0.5, -2.0])
    np.testing.assert_allclose(state_return(rollout, readout, terminal_weight=10)(actions), [-0.75, -0.5, -12.0])
    planner = make_planner("icem", LOW, HIGH, PlannerConfig(horizon=4, samples=128, iterations=6, elites=12, init_std=0.3, min_std=0.01))
    plan = planner.plan(state_return(rollout, readout, terminal_weight=10), np.random.default_rng(0))
    assert np.linalg.norm(plan.sum(0) - [1.0, 0.0]) < 0.05, "the plan brings the point to the target"


def test_state_goal_distance_rewards_reaching_the_goal_point_soonest():
    rollout, readout = point_mass()
    soon = np.array([[[1.0, 0.0], [0.0, 0.0]]])  # at (1, 0) from the first step
    late = np.array([[[0.0, 0.0], [1.0, 0.0]]])  # there at the last step
    near = np.array([[[0.5, 0.0], [0.4, 0.0]]])  # ends 0.1 short
    score = state_goal_distance(rollout, readout, np.array([1.0, 0.0]))
    np.testing.assert_allclose(score(np.concatenate([soon, late, near])), [0.0, -0.05, -(0.1 + 0.1 * 0.3)])
    assert state_goal_distance(rollout, readout, np.array([1.0]))(late + [0.0, 5.0])[0] == pytest.approx(-0.05), (
        "a goal point of fewer dims compares those only"
    )


def plan(*args, check=True):
    return run_tool("plan.py", *args, check=check)


SMALL = ["episodes=2", *SMALL_SEARCH]


@pytest.mark.parametrize("planner", ["cem", "mppi"])
def test_plan_tool_reward_protocol_end_to_end(checkpoint, tmp_path, planner):
    out = tmp_path / planner
    plan(f"checkpoint={checkpoint}", f"planner={planner}", f"out={out}", *SMALL)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"world_model", "oracle", "random"}
    for model, r in metrics["results"].items():
        assert len(r["episodes"]) == 2 and 0 <= r["success_rate"] <= 1
        assert r["mean_steps"] == 12 - 3  # the recorded task's 12-step episodes less the K-1 context steps
        assert (r["plan_seconds_per_step"] > 0) == (model != "random")


def test_plan_tool_goal_protocol_end_to_end(checkpoint, reacher_file, tmp_path):
    out = tmp_path / "goal"
    plan(
        f"checkpoint={checkpoint}",
        "protocol=goal",
        f"goal.data={reacher_file}",
        "goal.offset=5",
        "goal.budget=6",
        "models=[world_model,oracle]",
        f"out={out}",
        *SMALL,
    )
    results = json.loads((out / "metrics.json").read_text())["results"]
    assert all(1 <= e["steps"] <= 6 for r in results.values() for e in r["episodes"])


def test_plan_tool_scores_in_states_with_a_state_track(state_checkpoint, reacher_file, tmp_path):
    """Both protocols in states: the reward read from rolled-out states; a goal frame read by the position probe."""
    plan(f"checkpoint={state_checkpoint}", f"out={tmp_path / 'reward'}", *SMALL)
    metrics = json.loads((tmp_path / "reward" / "metrics.json").read_text())
    assert metrics["scoring"] == "states" and "scoring in states" in metrics["table"]
    assert all(r["mean_steps"] == 12 - 3 for r in metrics["results"].values())
    plan(
        f"checkpoint={state_checkpoint}",
        "protocol=goal",
        f"goal.data={reacher_file}",
        f"goal.probe_data={reacher_file}",
        "goal.probe_steps=20",
        "goal.offset=5",
        "goal.budget=6",
        "models=[world_model,oracle]",
        f"out={tmp_path / 'goal'}",
        *SMALL,
    )
    results = json.loads((tmp_path / "goal" / "metrics.json").read_text())["results"]
    assert results["world_model"]["goal_estimate_error_cm"] > 0 and "goal_estimate_error_cm" not in results["oracle"]
    assert all(1 <= e["steps"] <= 6 for r in results.values() for e in r["episodes"])


def test_plan_tool_runs_the_oracle_on_a_task_without_a_model(tmp_path):
    """What the planner can do with the task itself as its model, before any model is trained."""
    plan("task=reacher", "task.episode_steps=8", "models=[oracle,random]", f"out={tmp_path}", *SMALL)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["results"]) == {"oracle", "random"} and metrics["scoring"] == "states"
    assert all(r["mean_steps"] == 8 for r in metrics["results"].values()), "one context frame: the whole episode is planned"
    for args, message in [([], "name the task"), (["task=reacher"], "without one, models=[oracle,random]")]:
        result = plan(f"out={tmp_path}", *args, check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr[-2000:])


def test_plan_tool_refuses_bad_input(checkpoint, tmp_path):
    cases = [
        (["planner=annealing"], "Unknown planner"),
        (["task=pusher"], "checkpoint models task 'reacher'"),
        (["protocol=teleport"], "Unknown protocol"),
        (["models=[dream]"], "Unknown models"),
        (["protocol=goal"], "needs goal.data"),
        (["scoring=states"], "needs a model with a state track"),
        (["scoring=latents"], "scoring must be auto, states or frames"),
    ]
    for args, message in cases:
        result = plan(f"checkpoint={checkpoint}", f"out={tmp_path}", *args, check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr[-2000:])
