"""Model-predictive control in a real environment: plan, execute the first `replan_every` actions,
replan from what really happened. The model behind the plan is whatever `make_score` builds: the
world model from the last K real frames, or the simulator itself (the oracle)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from worldmodel.planning.optimizers import Score

# (last K frames (K, H, W, 3) uint8, the K-1 actions between them, their states (K, nq+nv) or None)
# -> a score for the planner
MakeScore = Callable[[np.ndarray, np.ndarray, np.ndarray | None], Score]


@dataclass
class EpisodeResult:
    success: bool
    episode_return: float
    steps: int
    plan_seconds: float  # total time spent planning

    @property
    def plan_seconds_per_step(self) -> float:
        return self.plan_seconds / max(self.steps, 1)


def run_mpc(
    env,
    planner,
    make_score: MakeScore | None,
    context_frames: np.ndarray,
    context_actions: np.ndarray,
    steps: int,
    replan_every: int,
    rng: np.random.Generator,
    success: Callable[[dict], bool],
    stop_on_success: bool = False,
    context_states: np.ndarray | None = None,
) -> EpisodeResult:
    """Runs `steps` real steps from the env's current state.

    context_frames (K, H, W, 3) / context_actions (K-1, A): how the env got here (the world model's
    start window). make_score None: uniformly random actions (the baseline), no planning.
    success(info) is checked after every step; the episode's success is the last check, or the
    first success when stop_on_success. context_states (K, nq+nv): the frames' [qpos, qvel], for a
    world model with a state track (then read from each step's info["qpos"], info["qvel"]), else None.
    """
    frames = deque(context_frames, maxlen=len(context_frames))
    states = None if context_states is None else deque(context_states, maxlen=len(context_states))
    actions = deque(context_actions, maxlen=len(context_actions))
    space = env.action_space
    if planner is not None:
        planner.reset()
    total, plan_seconds, t, ok = 0.0, 0.0, 0, False
    while t < steps:
        if make_score is None:
            chunk = rng.uniform(space.low, space.high, (replan_every, *space.shape)).astype(np.float32)
        else:
            start = time.perf_counter()
            window_actions = np.asarray(actions, np.float32).reshape(len(actions), *space.shape)
            chunk = planner.plan(make_score(np.stack(frames), window_actions, None if states is None else np.stack(states)), rng)[
                :replan_every
            ]
            plan_seconds += time.perf_counter() - start
        for action in chunk:
            frame, reward, terminated, truncated, info = env.step(action)
            frames.append(frame)
            actions.append(action)
            if states is not None:
                states.append(np.concatenate([info["qpos"], info["qvel"]]).astype(np.float32))
            total += reward
            t += 1
            ok = success(info)
            if terminated or truncated or t >= steps or (stop_on_success and ok):
                return EpisodeResult(ok, total, t, plan_seconds)
        if planner is not None:
            planner.shift(len(chunk))
    return EpisodeResult(ok, total, t, plan_seconds)
