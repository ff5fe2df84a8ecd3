"""MPC in the real MuJoCo task with a world model, next to the same planner on the real simulator
(the oracle) and the random policy.

    python tools/plan.py checkpoint=runs/reacher/model.pt task=reacher planner=cem episodes=20 out=plan/reacher
    python tools/plan.py checkpoint=runs/reacher/model.pt protocol=goal goal.data=data/reacher_val.h5 episodes=10 out=plan/reacher_goal

protocol=reward: from reset(seed), K-1 zero actions build the first context, then MPC maximises
the predicted reward sum for the rest of the episode; success is the task's test at the last step.
protocol=goal: start from a recorded state, the goal is the recorded frame `goal.offset` steps
later; MPC minimises the pixel distance to it within `goal.budget` steps; success when the task's
goal body is within the task's success distance of where it is in the goal state.
Writes out/metrics.json and prints a table: success rate, return, planning seconds per step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs import get_task
from envs.tasks import PixelTaskEnv
from worldmodel.data.reader import RolloutReader
from worldmodel.planning import (PlannerConfig, goal_distance, make_planner, predicted_return, run_mpc,
                                 simulator_goal_distance, simulator_return)
from worldmodel.rollout import WorldModel

logger = logging.getLogger("plan")
MODELS = ("world_model", "oracle", "random")
PROTOCOLS = ("reward", "goal")


def check_config(cfg: DictConfig, wm: WorldModel) -> str:
    """The task to plan in; refuses unknown protocols, models, planners and a task the model does not know."""
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {cfg.protocol!r}; choose one of {list(PROTOCOLS)}.")
    unknown = set(cfg.models) - set(MODELS)
    if unknown:
        raise ValueError(f"Unknown models {sorted(unknown)}; choose from {list(MODELS)}.")
    task = cfg.task.name if cfg.get("task") else wm.metadata.get("task")
    if task != wm.metadata.get("task"):
        raise ValueError(f"The checkpoint models task {wm.metadata.get('task')!r}, not {task!r}; plan in its own task.")
    if cfg.protocol == "goal" and not cfg.goal.data:
        raise ValueError("protocol=goal needs goal.data=PATH: recorded rollouts of the task (starts and goal frames).")
    return task


def goal_starts(cfg: DictConfig, wm: WorldModel, env: PixelTaskEnv, count: int) -> list[dict]:
    """`count` (start, goal) pairs from recorded episodes: context frames/actions, start qpos/qvel, goal
    frame and state. Starts closer to their goal than `goal.min_start_distance` success distances are
    skipped: in recordings where the arm rests at its target, they are solved by doing nothing."""
    k, offset = wm.context, cfg.goal.offset
    rng = np.random.default_rng(cfg.seed)
    starts = []
    with RolloutReader(cfg.goal.data) as reader:
        if reader.metadata["task"] != wm.metadata.get("task"):
            raise ValueError(f"{cfg.goal.data} holds task {reader.metadata['task']!r}; the checkpoint models {wm.metadata.get('task')!r}.")
        usable = [e for e in range(reader.num_episodes) if reader.lengths[e] >= k - 1 + offset]
        if not usable:
            raise ValueError(f"No episode of {cfg.goal.data} is long enough for {k} context frames and a goal {offset} steps on.")
        for attempt in range(100 * count):
            if len(starts) == count:
                break
            e = usable[attempt % len(usable)]
            t0 = int(rng.integers(k - 1, int(reader.lengths[e]) - offset + 1))
            state = lambda t, name: reader.frames(e, t, t + 1, name=name)[0]  # noqa: E731
            env.set_state(qpos=state(t0 + offset, "qpos"), qvel=state(t0 + offset, "qvel"))
            goal_point = env.goal_point()
            env.set_state(qpos=state(t0, "qpos"), qvel=state(t0, "qvel"))
            if np.linalg.norm(env.goal_point() - goal_point) < cfg.goal.min_start_distance * env.preset.success_distance:
                continue
            starts.append({
                "frames": reader.frames(e, t0 - k + 1, t0 + 1), "actions": reader.steps("actions", e, t0 - k + 1, t0),
                "qpos": state(t0, "qpos"), "qvel": state(t0, "qvel"), "goal_frame": reader.frames(e, t0 + offset, t0 + offset + 1)[0],
                "goal_qpos": state(t0 + offset, "qpos"), "goal_qvel": state(t0 + offset, "qvel"),
            })
    if len(starts) < count:
        raise ValueError(f"{cfg.goal.data} has only {len(starts)} starts at least {cfg.goal.min_start_distance} success distances from their goal; record more episodes.")
    return starts


def episode_start(cfg: DictConfig, env: PixelTaskEnv, k: int, i: int, starts: list[dict] | None) -> dict:
    """Puts the env at episode i's start; returns its context, step budget, goal frame and success test."""
    env.reset(seed=cfg.seed + i)
    if starts is None:  # reward protocol: the first context is K-1 zero actions, the same for every model
        frames, actions = [env.render()], []
        for _ in range(k - 1):
            actions.append(np.zeros(env.action_space.shape, np.float32))
            frames.append(env.step(actions[-1])[0])
        return {"frames": np.stack(frames), "actions": np.asarray(actions, np.float32).reshape(k - 1, *env.action_space.shape),
                "steps": env.preset.episode_steps - (k - 1), "goal_frame": None, "stop_on_success": False,
                "success": lambda info: bool(info["success"])}
    s = starts[i]
    env.set_state(qpos=s["goal_qpos"], qvel=s["goal_qvel"])
    goal_point = env.goal_point()
    env.set_state(qpos=s["qpos"], qvel=s["qvel"])
    return {"frames": s["frames"], "actions": s["actions"], "steps": cfg.goal.budget, "goal_frame": s["goal_frame"],
            "stop_on_success": True,
            "success": lambda info: bool(np.linalg.norm(env.goal_point() - goal_point) < env.preset.success_distance)}


def score_maker(model: str, wm: WorldModel, env: PixelTaskEnv, goal_frame: np.ndarray | None, generator: torch.Generator,
                sigma: float):
    """What the planner scores candidates with: the world model from the real context, the simulator (oracle), or None (random).
    sigma: Gaussian blur (pixels) of frames and goal before their distance is taken."""
    if model == "random":
        return None
    if model == "oracle":
        return lambda frames, actions: simulator_return(env) if goal_frame is None else simulator_goal_distance(env, goal_frame, sigma)

    def make_score(frames: np.ndarray, actions: np.ndarray):
        window = wm.window(torch.from_numpy(frames)[None], torch.from_numpy(np.asarray(actions, np.float32))[None])
        return predicted_return(wm, window, generator) if goal_frame is None else goal_distance(wm, window, goal_frame, generator, sigma)

    return make_score


@hydra.main(config_path="../configs", config_name="plan", version_base=None)
def main(cfg: DictConfig) -> None:
    wm = WorldModel.load(cfg.checkpoint, device=cfg.device, **({"steps": cfg.sampler_steps} if cfg.sampler_steps else {}))
    task = check_config(cfg, wm)
    env = PixelTaskEnv(get_task(task, frame_size=tuple(wm.frame_shape[:2])))
    planner = make_planner(cfg.planner, env.action_space.low, env.action_space.high, PlannerConfig(**cfg.search))
    starts = goal_starts(cfg, wm, env, cfg.episodes) if cfg.protocol == "goal" else None
    results = {}
    for model in cfg.models:
        episodes = []
        for i in tqdm(range(cfg.episodes), unit="ep", desc=f"{model} ({cfg.planner}, {cfg.protocol})"):
            start = episode_start(cfg, env, wm.context, i, starts)
            make_score = score_maker(model, wm, env, start["goal_frame"], torch.Generator().manual_seed(cfg.seed * 100_003 + i),
                                     cfg.goal.blur)
            episodes.append(run_mpc(env, planner, make_score, start["frames"], start["actions"], start["steps"], cfg.replan_every,
                                    np.random.default_rng([cfg.seed, i]), start["success"], start["stop_on_success"]))
        results[model] = {
            "success_rate": float(np.mean([e.success for e in episodes])),
            "mean_return": float(np.mean([e.episode_return for e in episodes])),
            "plan_seconds_per_step": float(np.mean([e.plan_seconds_per_step for e in episodes])),
            "mean_steps": float(np.mean([e.steps for e in episodes])),
            "episodes": [vars(e) for e in episodes],
        }
    env.close()
    rows = [f"| {m} | {r['success_rate']:.2f} | {r['mean_return']:.2f} | {r['plan_seconds_per_step']:.3f} | {r['mean_steps']:.1f} |"
            for m, r in results.items()]
    table = "\n".join([f"{task}, protocol={cfg.protocol}, planner={cfg.planner}, {cfg.episodes} episodes",
                       "| model | success | return | planning s/step | steps |", "|---|---|---|---|---|", *rows])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"task": task, "results": results, "table": table,
                                                  "config": OmegaConf.to_container(cfg, resolve=True)}, indent=2))
    print(table)
    logger.info("wrote %s", out / "metrics.json")


if __name__ == "__main__":
    main()
