"""MPC in the real MuJoCo task with a world model, next to the same planner on the real simulator
(the oracle) and the random policy. The protocols (reward, goal) are `worldmodel.planning.protocols`.

    python tools/plan.py checkpoint=runs/reacher/model.pt task=reacher planner=cem episodes=20 out=plan/reacher
    python tools/plan.py checkpoint=runs/reacher/model.pt protocol=goal goal.data=data/reacher_val.h5 episodes=10 out=plan/reacher_goal

Writes out/metrics.json and prints a table: success rate, return, planning seconds per step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs import get_task, make_task_env
from worldmodel.planning import GoalProtocol, PlannerConfig, check_protocol, make_planner, run_protocol
from worldmodel.world_model import WorldModel

logger = logging.getLogger("plan")


@hydra.main(config_path="../configs", config_name="plan", version_base=None)
def main(cfg: DictConfig) -> None:
    wm = WorldModel.load(cfg.checkpoint, device=cfg.device, **({"steps": cfg.sampler_steps} if cfg.sampler_steps else {}))
    task = wm.spec.task_name
    check_protocol(cfg.protocol, cfg.models, cfg.task.name if cfg.get("task") else task, task)
    env = make_task_env(get_task(wm.spec.task))  # the task exactly as the model's data was recorded
    planner = make_planner(cfg.planner, env.action_space.low, env.action_space.high, PlannerConfig(**cfg.search))
    goal = GoalProtocol(**cfg.goal) if cfg.protocol == "goal" else None
    bar = lambda model: lambda episodes: tqdm(episodes, unit="ep", desc=f"{model} ({cfg.planner}, {cfg.protocol})")  # noqa: E731
    results = run_protocol(wm, env, planner, cfg.protocol, list(cfg.models), cfg.episodes, cfg.seed, cfg.replan_every, goal, bar)
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
