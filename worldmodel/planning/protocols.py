"""Planning protocols: model-predictive control in a real simulator with the world model, with the
simulator itself as the model (the oracle) and with random actions, from the same starts.

- reward: from reset(seed), K-1 zero actions build the first context, then MPC maximises the
  predicted reward sum for the rest of the episode; success is the task's test at the last step.
- goal (as stable-worldmodel does it): start from a recorded state; the goal is the recorded frame
  `offset` steps later; MPC brings the task's goal body to where the goal frame shows it within
  `budget` steps; success when it is within the task's success distance of where it is in the
  goal state.

Candidates are scored in one of two ways. In states (`StateScoring`, a model with a state track):
the state track rolls them forward, the task's reward or goal distance is read from the states, and
a goal frame is first mapped to where it shows the goal body (`estimate_goal`, e.g. the position
probe); the oracle scores the real simulator's states the same way, with the true goal. In frames:
every candidate's frames are sampled and rewarded by the reward head, or compared with the goal
frame after a blur; the oracle renders its frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worldmodel.data.reader import RolloutReader
from worldmodel.planning.mpc import EpisodeResult, MakeScore, run_mpc
from worldmodel.planning.objectives import goal_distance, predicted_return, simulator_goal_distance, simulator_return
from worldmodel.planning.optimizers import Planner
from worldmodel.planning.state_space import TaskReadout, dynamics_rollout, simulator_rollout, state_goal_distance, state_return
from worldmodel.simulator import Simulator
from worldmodel.threads import small_ops
from worldmodel.world_model import WorldModel

MODELS = ("world_model", "oracle", "random")
PROTOCOLS = ("reward", "goal")


@dataclass(frozen=True)
class StateScoring:
    """Score candidates in states: readout, the task's reward and goal body as functions of a
    state; estimate_goal, a goal frame (H, W, 3) uint8 -> (D,) where it shows the goal body (the
    goal protocol's world model; D may be fewer than the task's success dims, e.g. the table plane);
    terminal_weight, the reward protocol's weight on the horizon's last state (`state_return`)."""

    readout: TaskReadout
    estimate_goal: Callable[[np.ndarray], np.ndarray] | None = None
    terminal_weight: float = 0.0


@dataclass(frozen=True)
class GoalProtocol:
    """data: recorded rollouts (with states) of the task, where starts and goals come from;
    offset: goal = the frame this many steps after the start state; budget: steps allowed;
    blur: Gaussian blur (pixels) of frames and goal before their distance; min_start_distance:
    skip starts closer to their goal than this many task success distances."""

    data: str | os.PathLike | None
    offset: int = 25
    budget: int = 50
    blur: float = 3.0
    min_start_distance: float = 3.0


@dataclass
class EpisodeStart:
    """Where an episode starts: the context (K, H, W, 3) frames and (K-1, A) actions that led there,
    the step budget, the goal frame (goal protocol), the success test on a step's info and the
    context's states (K, nq+nv) [qpos, qvel], where the goal state puts the goal body (goal protocol)."""

    frames: np.ndarray
    actions: np.ndarray
    steps: int
    goal_frame: np.ndarray | None
    success: Callable[[dict], bool]
    stop_on_success: bool
    states: np.ndarray
    goal_point: np.ndarray | None = None


@dataclass
class GoalStart:
    """A recorded start state and the state `offset` steps later, with the context's frames, actions
    and states (K, nq+nv)."""

    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    goal_frame: np.ndarray
    goal_qpos: np.ndarray
    goal_qvel: np.ndarray


def check_protocol(protocol: str, models: Sequence[str], task: str, model_task: str) -> None:
    """Refuses unknown protocols and models, and a task other than the model's."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}.")
    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"Unknown models {sorted(unknown)}; choose from {list(MODELS)}.")
    if task != model_task:
        raise ValueError(f"The checkpoint models task {model_task!r}, not {task!r}; plan in its own task.")


def goal_starts(sim: Simulator, goal: GoalProtocol, task: str, context: int, count: int, seed: int) -> list[GoalStart]:
    """`count` (start, goal) pairs drawn from the recorded episodes of `goal.data`. Starts closer to
    their goal than `goal.min_start_distance` success distances are skipped: in recordings where
    the arm rests at its target, they are solved by doing nothing."""
    k, offset = context, goal.offset
    rng = np.random.default_rng(seed)
    starts = []
    with RolloutReader(goal.data) as reader:
        if reader.metadata["task"] != task:
            raise ValueError(f"{goal.data} holds task {reader.metadata['task']!r}; the checkpoint models {task!r}.")
        usable = [e for e in range(reader.num_episodes) if reader.lengths[e] >= k - 1 + offset]
        if not usable:
            raise ValueError(f"No episode of {goal.data} is long enough for {k} context frames and a goal {offset} steps on.")
        for attempt in range(100 * count):
            if len(starts) == count:
                break
            e = usable[attempt % len(usable)]
            t0 = int(rng.integers(k - 1, int(reader.lengths[e]) - offset + 1))
            state = lambda t, name: reader.frames(e, t, t + 1, name=name)[0]  # noqa: E731
            sim.set_state(qpos=state(t0 + offset, "qpos"), qvel=state(t0 + offset, "qvel"))
            goal_point = sim.goal_point()
            sim.set_state(qpos=state(t0, "qpos"), qvel=state(t0, "qvel"))
            if np.linalg.norm(sim.goal_point() - goal_point) < goal.min_start_distance * sim.success_distance:
                continue
            starts.append(
                GoalStart(
                    frames=reader.frames(e, t0 - k + 1, t0 + 1),
                    actions=reader.steps("actions", e, t0 - k + 1, t0),
                    states=reader.states(e, t0 - k + 1, t0 + 1),
                    qpos=state(t0, "qpos"),
                    qvel=state(t0, "qvel"),
                    goal_frame=reader.frames(e, t0 + offset, t0 + offset + 1)[0],
                    goal_qpos=state(t0 + offset, "qpos"),
                    goal_qvel=state(t0 + offset, "qvel"),
                )
            )
    if len(starts) < count:
        raise ValueError(
            f"{goal.data} has only {len(starts)} starts at least {goal.min_start_distance} success distances "
            "from their goal; record more episodes."
        )
    return starts


def reward_start(sim: Simulator, context: int, seed: int) -> EpisodeStart:
    """The reward protocol's start: reset(seed), then K-1 zero actions build the first context."""
    frame, info = sim.reset(seed=seed)
    frames, actions, states = [frame], [], [np.concatenate([info["qpos"], info["qvel"]])]
    for _ in range(context - 1):
        actions.append(np.zeros(sim.action_space.shape, np.float32))
        frame, _, _, _, info = sim.step(actions[-1])
        frames.append(frame)
        states.append(np.concatenate([info["qpos"], info["qvel"]]))
    return EpisodeStart(
        np.stack(frames),
        np.asarray(actions, np.float32).reshape(context - 1, *sim.action_space.shape),
        sim.episode_steps - (context - 1),
        None,
        lambda info: bool(info["success"]),
        False,
        np.stack(states).astype(np.float32),
    )


def goal_start(sim: Simulator, start: GoalStart, budget: int, seed: int) -> EpisodeStart:
    """Puts the simulator at a recorded start; success: the goal body within the success distance
    of where it is in the goal state."""
    sim.reset(seed=seed)
    sim.set_state(qpos=start.goal_qpos, qvel=start.goal_qvel)
    goal_point = sim.goal_point()
    sim.set_state(qpos=start.qpos, qvel=start.qvel)
    return EpisodeStart(
        start.frames,
        start.actions,
        budget,
        start.goal_frame,
        lambda info: bool(np.linalg.norm(sim.goal_point() - goal_point) < sim.success_distance),
        True,
        start.states,
        goal_point,
    )


def score_maker(
    model: str,
    wm: WorldModel,
    sim: Simulator,
    start: EpisodeStart,
    generator: torch.Generator,
    blur: float,
    scoring: StateScoring | None = None,
    goal_point: np.ndarray | None = None,
) -> MakeScore | None:
    """What the planner scores candidates with: the world model from the real context, the simulator
    (oracle), or None (random); in states (`scoring`) or in frames (None). blur: Gaussian blur
    (pixels) of frames and goal before their distance. goal_point: the world model's estimate of
    where the goal frame shows the goal body (states, goal protocol)."""
    if model == "random":
        return None
    goal_frame = start.goal_frame

    def in_states(rollout, point: np.ndarray | None):
        if goal_frame is None:
            return state_return(rollout, scoring.readout, sim.episode_goal(), scoring.terminal_weight)
        return state_goal_distance(rollout, scoring.readout, point)

    if model == "oracle":
        if scoring is not None:
            return lambda frames, actions, states: in_states(simulator_rollout(sim), start.goal_point)
        return lambda frames, actions, states: (
            simulator_return(sim) if goal_frame is None else simulator_goal_distance(sim, goal_frame, blur)
        )

    def make_score(frames: np.ndarray, actions: np.ndarray, states: np.ndarray | None):
        window = wm.window(
            torch.from_numpy(frames)[None],
            torch.from_numpy(np.asarray(actions, np.float32))[None],
            None if states is None else torch.from_numpy(states)[None],
        )
        if scoring is not None:
            return in_states(dynamics_rollout(wm, window), goal_point)
        return predicted_return(wm, window, generator) if goal_frame is None else goal_distance(wm, window, goal_frame, generator, blur)

    return make_score


def run_protocol(
    wm: WorldModel | None,
    sim: Simulator,
    planner: Planner,
    protocol: str,
    models: Sequence[str],
    episodes: int,
    seed: int,
    replan_every: int,
    goal: GoalProtocol | None = None,
    progress: Callable[[str], Callable[[range], Any]] = lambda name: iter,
    scoring: StateScoring | None = None,
) -> dict[str, dict]:
    """Runs `episodes` MPC episodes per model (same starts for every model) and summarises them:
    {model: {success_rate, mean_return, plan_seconds_per_step, mean_steps, episodes}} (the world
    model's goal protocol in states also: goal_estimate_error_cm, the mean distance of its goal
    estimates from the true goal points). progress(model name) wraps the episode range (e.g. a tqdm
    bar); scoring: score in states (else in frames). wm None (the oracle and random only, what the
    task allows before any model is trained): one context frame, the simulator's own task."""
    if wm is None and "world_model" in models:
        raise ValueError("planning with the world model needs its checkpoint; without one, models=[oracle,random].")
    context, task = (1, sim.task_name) if wm is None else (wm.context, wm.spec.task_name)
    if protocol == "goal" and (goal is None or not goal.data):
        raise ValueError("protocol=goal needs goal.data=PATH: recorded rollouts of the task (starts and goal frames).")
    if scoring is not None and "world_model" in models and wm.dynamics is None:
        raise ValueError("scoring in states needs a model with a state track (model.state in training); plan with scoring=frames.")
    if scoring is not None and protocol == "goal" and "world_model" in models and scoring.estimate_goal is None:
        raise ValueError("the goal protocol in states needs estimate_goal: where a goal frame shows the goal body.")
    blur = goal.blur if goal is not None else 0.0
    starts = goal_starts(sim, goal, task, context, episodes, seed) if protocol == "goal" else None
    results = {}
    with small_ops() if scoring is not None else nullcontext():  # in states, every stage is small operations
        for model in models:
            runs: list[EpisodeResult] = []
            estimate_errors = []
            for i in progress(model)(range(episodes)):
                start = reward_start(sim, context, seed + i) if starts is None else goal_start(sim, starts[i], goal.budget, seed + i)
                goal_point = None
                if model == "world_model" and scoring is not None and start.goal_frame is not None:
                    goal_point = np.asarray(scoring.estimate_goal(start.goal_frame), np.float64)
                    estimate_errors.append(float(np.linalg.norm(goal_point - start.goal_point[: len(goal_point)]) * 100))
                make_score = score_maker(
                    model, wm, sim, start, torch.Generator().manual_seed(seed * 100_003 + i), blur, scoring, goal_point
                )
                runs.append(
                    run_mpc(
                        sim,
                        planner,
                        make_score,
                        start.frames,
                        start.actions,
                        start.steps,
                        replan_every,
                        np.random.default_rng([seed, i]),
                        start.success,
                        start.stop_on_success,
                        start.states if wm is not None and wm.state_shape is not None else None,
                    )
                )
            results[model] = {
                "success_rate": float(np.mean([e.success for e in runs])),
                "mean_return": float(np.mean([e.episode_return for e in runs])),
                "plan_seconds_per_step": float(np.mean([e.plan_seconds_per_step for e in runs])),
                "mean_steps": float(np.mean([e.steps for e in runs])),
                "episodes": [vars(e) for e in runs],
            }
            if estimate_errors:
                results[model]["goal_estimate_error_cm"] = float(np.mean(estimate_errors))
    return results
