"""MPC in the real MuJoCo task with a world model, next to the same planner on the real simulator
(the oracle) and the random policy. The protocols (reward, goal) are `worldmodel.planning.protocols`.

    python tools/plan.py checkpoint=runs/reacher/model.pt task=reacher episodes=20 out=plan/reacher
    python tools/plan.py checkpoint=runs/reacher/model.pt planner=cem scoring=frames search.horizon=5 search.samples=16 out=plan/frames
    python tools/plan.py checkpoint=runs/reacher/model.pt protocol=goal goal.data=data/reacher_val.h5 episodes=10 out=plan/reacher_goal
    python tools/plan.py task=pusher models=[oracle,random] episodes=20 out=plan/pusher_oracle   # no model: the planner on the task itself

Writes out/metrics.json and prints a table: success rate, return, planning seconds per step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs import get_task, make_task_env
from envs.mujoco.observations import StateObserver
from worldmodel.checks import check_counts
from worldmodel.evaluation.probe import load_or_train_probe
from worldmodel.evaluation.tables import planning_verdict
from worldmodel.planning import GoalProtocol, PlannerConfig, StateScoring, check_protocol, make_planner, run_protocol
from worldmodel.world_model import WorldModel

logger = logging.getLogger("plan")


@hydra.main(config_path="../configs", config_name="plan", version_base=None)
def main(cfg: DictConfig) -> None:
    check_counts(cfg, episodes=1, replan_every=1, seed=0, sampler_steps=1)
    if cfg.checkpoint is None:  # what the planner does with the task itself as its model, before any model is trained
        if not cfg.get("task"):
            raise ValueError(
                "Without a checkpoint, name the task (task=pusher) and plan with the oracle and random only (models=[oracle,random])."
            )
        wm, preset = None, get_task(OmegaConf.to_container(cfg.task, resolve=True))
        check_protocol(cfg.protocol, cfg.models, preset.name, preset.name)
    else:
        wm = WorldModel.load(cfg.checkpoint, device=cfg.device, **({"steps": cfg.sampler_steps} if cfg.sampler_steps else {}))
        preset = get_task(wm.spec.task)  # the task exactly as the model's data was recorded
        check_protocol(cfg.protocol, cfg.models, cfg.task.name if cfg.get("task") else preset.name, preset.name)
    task = preset.name
    env = make_task_env(preset)
    planner = make_planner(cfg.planner, env.action_space.low, env.action_space.high, PlannerConfig(**cfg.search))
    goal = GoalProtocol(**{k: v for k, v in cfg.goal.items() if not k.startswith("probe_")}) if cfg.protocol == "goal" else None
    scoring = state_scoring(cfg, wm, env)
    mode = "frames" if scoring is None else "states"
    bar = lambda model: lambda episodes: tqdm(episodes, unit="ep", desc=f"{model} ({cfg.planner}, {cfg.protocol}, {mode})")  # noqa: E731
    results = run_protocol(wm, env, planner, cfg.protocol, list(cfg.models), cfg.episodes, cfg.seed, cfg.replan_every, goal, bar, scoring)
    env.close()
    if scoring is not None:
        scoring.readout.close()
    rows = [
        f"| {m} | {r['success_rate']:.2f} | {r['mean_return']:.2f} | {r['plan_seconds_per_step']:.3f} | {r['mean_steps']:.1f} |"
        for m, r in results.items()
    ]
    estimate = results.get("world_model", {}).get("goal_estimate_error_cm")
    table = "\n".join(
        [
            f"{task}, protocol={cfg.protocol}, planner={cfg.planner}, scoring in {mode}, {cfg.episodes} episodes"
            + ("" if estimate is None else f", goal estimated from the goal frame {estimate:.2f} cm off on average"),
            planning_verdict(results),
            "",
            "| model | success | return | planning s/step | steps |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(
        json.dumps(
            {"task": task, "scoring": mode, "results": results, "table": table, "config": OmegaConf.to_container(cfg, resolve=True)},
            indent=2,
        )
    )
    print(table)
    logger.info("wrote %s", out / "metrics.json")


def state_scoring(cfg: DictConfig, wm: WorldModel | None, env) -> StateScoring | None:
    """Scoring in states (scoring=states, or auto with a state track), else None (in frames). The goal
    protocol's world model maps each goal frame to its goal body's table-plane position with the
    position probe (trained once on goal.probe_data, default the model's training data, and cached)."""
    if cfg.scoring not in ("auto", "states", "frames"):
        raise ValueError(f"scoring must be auto, states or frames, got {cfg.scoring!r}.")
    if cfg.scoring == "frames" or (cfg.scoring == "auto" and wm is not None and wm.dynamics is None):
        return None
    preset = env.preset
    estimate_goal = None
    if cfg.protocol == "goal" and "world_model" in cfg.models and wm is not None:
        if preset.goal_body not in preset.key_bodies:
            raise ValueError(
                f"Task {preset.name!r}: the goal frame is read by the position probe, whose key_bodies "
                f"{list(preset.key_bodies)} lack the goal body {preset.goal_body!r}; add it or plan with scoring=frames."
            )
        probe = load_or_train_probe(
            wm,
            env.key_positions,
            preset.key_bodies,
            cfg.goal.probe_data,
            cfg.goal.probe_steps,
            progress=lambda steps: tqdm(steps, desc="position probe (goal frames)"),
        )
        row = preset.key_bodies.index(preset.goal_body)
        estimate_goal = lambda frame: probe(torch.from_numpy(frame)[None])[0, row].detach().numpy()  # noqa: E731
    return StateScoring(StateObserver(preset), estimate_goal, cfg.terminal_weight)


if __name__ == "__main__":
    main()
