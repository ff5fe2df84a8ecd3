"""Evaluate a world model on held-out data (fidelity), as a policy evaluator against real episodes
(policies), or score policies in imagination alone (score).

    python tools/evaluate.py checkpoint=pretrained/reacher.pt data=data/reacher_val.h5 out=eval/reacher
    python tools/evaluate.py mode=policies checkpoint=pretrained/reacher.pt out=eval/reacher_policies policy_episodes=10
    python tools/evaluate.py mode=policies checkpoint=pretrained/reacher.pt out=eval/zoo \
        'policies=[expert,random,"sb3:PPO:zoo/reacher/ppo_state_50000.zip","mypackage.policies:MyPolicy"]'
    python tools/evaluate.py mode=score checkpoint=pretrained/reacher.pt out=eval/score 'policies=[expert,random]'

Writes out/metrics.json, plots and (fidelity) a side-by-side video, and prints a summary table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs import get_task, make_task_env
from worldmodel.checks import check_counts
from worldmodel.evaluation.fidelity import held_out_episodes, rollout_fidelity
from worldmodel.evaluation.plots import plot_fidelity, plot_returns
from worldmodel.evaluation.policy_eval import episode_window, evaluate_in_imagination, score_in_imagination
from worldmodel.evaluation.probe import load_or_train_probe
from worldmodel.evaluation.tables import fidelity_tables
from worldmodel.world_model import WorldModel

logger = logging.getLogger("evaluate")
MODES = ("fidelity", "policies", "score")


def evaluate_fidelity(cfg: DictConfig, wm: WorldModel, out: Path) -> dict:
    if not cfg.data:
        raise ValueError("mode=fidelity needs data=PATH: held-out rollouts of the model's task.")
    episodes, which = held_out_episodes(wm, cfg.data)
    probe, env = None, None
    preset = get_task(wm.spec.task)
    if preset.key_bodies or wm.state_shape is not None:
        env = make_task_env(preset)
        if cfg.probe and preset.key_bodies:
            probe = load_or_train_probe(
                wm,
                env.key_positions,
                preset.key_bodies,
                cfg.probe_data,
                cfg.probe_steps,
                progress=lambda steps: tqdm(steps, unit="step", desc="position probe"),
            )
    observer = state_observer(wm, preset)
    logger.info("imagining %d episodes of %s (%s)", min(len(episodes), cfg.episodes), cfg.data, which)
    result = rollout_fidelity(
        wm,
        cfg.data,
        episodes,
        list(cfg.horizons),
        cfg.episodes,
        out / "side_by_side.mp4",
        cfg.seed,
        cfg.videos,
        probe,
        env.key_positions if env and preset.key_bodies else None,
        cfg.first_frame,
        preset.key_bodies,
        None if observer is None else lambda states: np.stack([observer.observe(s) for s in states]),
        None if env is None else state_renderer(env, wm),
    )
    if env:
        env.close()
    dropped = [h for h in cfg.horizons if h not in result["horizons"]]
    if dropped:
        logger.warning(
            "horizons %s are longer than the episodes allow after %d context frames; record longer episodes "
            "(task.episode_steps=...) to measure them",
            dropped,
            wm.context,
        )
    plot_fidelity(result["curves"], out / "fidelity.png", f"{wm.spec.task_name}: {len(result['episodes'])} held-out episodes")
    table = fidelity_tables(result, preset.key_bodies, preset.env_id)
    return {"mode": "fidelity", "data": str(cfg.data), "split": which, **result, "table": table}


def state_renderer(env, wm: WorldModel):
    """The task's own rendering of states (N, nq+nv) -> (N, H, W, 3) uint8 (`PixelTaskEnv.set_state`),
    for a model with a state track; None for a goal-based task (its goal marker is not in the state)."""
    if wm.state_shape is None or env.goal_shape is not None:
        return None
    nq = wm.spec.dynamics["nq"]
    return lambda states: np.stack([env.set_state(qpos=s[:nq], qvel=s[nq:]) for s in states])


def state_observer(wm: WorldModel, preset):
    """The observer of the task's own observation for a model with a state track, else None; None
    too for a goal-based task (its observation also needs each episode's goal: not measured here)."""
    from envs.mujoco.observations import StateObserver

    if wm.state_shape is None:
        return None
    observer = StateObserver(preset)
    if observer.goal_based:
        logger.info("%s is goal-based: no table of its observation's error", preset.env_id)
        observer.close()
        return None
    return observer


def policy_specs(entries) -> list:
    """`policies=[...]` entries: a name (`expert`, `pkg.module:attr`, `sb3:PPO:path.zip`) or a dict
    {name, eps, label}."""
    from envs.mujoco.recording import PolicySpec

    return [PolicySpec(entry) if isinstance(entry, str) else PolicySpec(**entry) for entry in entries]


def policy_setup(cfg: DictConfig, wm: WorldModel):
    """The task as the model's data was recorded, the policies asked for (specs), and the observer
    whose shadow imagined copies of them act in (None for a model without a state track)."""
    from envs.mujoco.observations import StateObserver
    from envs.mujoco.policies import lacks_expert
    from envs.policy_zoo import read_index

    # The task exactly as the model's data was recorded (episode length, action repeat, camera).
    preset = get_task(wm.spec.task, **({"episode_steps": cfg.policy_episode_steps} if cfg.policy_episode_steps else {}))
    specs = policy_specs([*cfg.policies, *(read_index(cfg.zoo) if cfg.zoo else [])])
    # The default list leans on the expert: without one, score the rest.
    skipped = [str(s) for s in specs if lacks_expert(s.name, preset.name)]
    specs = [s for s in specs if not lacks_expert(s.name, preset.name)]
    if skipped:
        logger.warning(
            "task %s has no scripted expert: skipping %s (add learned policies with zoo=... or policies=[...])", preset.name, skipped
        )
    names = [str(s) for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"policies must have distinct names (give a label): {names}.")
    return preset, specs, names, StateObserver(preset) if wm.state_shape is not None else None


def check_closed_loop(policies, names, observer) -> None:
    """Refuses, before any work, state policies a model without a state track cannot show anything to."""
    blind = [n for n, p in zip(names, policies) if p.observes == "state"]
    if observer is None and blind:
        raise ValueError(
            f"policies {blind} observe state, and this model imagines none (no state track), so they cannot act in "
            "it: train one with dynamics=state_mlp (the default), or replay their real actions with loop=open "
            "(a diagnostic), or score only pixel policies."
        )


def imagined_copies(specs, observer, preset):
    """One factory of fresh policies per spec, built on the observer's shadow (so scripted policies
    read the imagined state), or on a plain task env for a model without a state track."""
    env = observer.shadow if observer is not None else make_task_env(preset)
    check_closed_loop([spec.build(env) for spec in specs], [str(s) for s in specs], observer)  # before any work
    return [lambda spec=spec: spec.build(env) for spec in specs]


def policies_table(stats: dict, episodes: int) -> str:
    first, last = stats["scored_steps"]
    success_r = (
        f"{stats['success_pearson_r']:.3f}" if stats["success_pearson_r"] is not None else f"n/a ({stats['success_pearson_r_missing']})"
    )
    rows = [
        f"| {n} | {p['loop']} | {p['real_success']:.2f} | {'n/a' if p['imagined_success'] is None else format(p['imagined_success'], '.2f')} "
        f"| {interval(p, 'real_return')} | {interval(p, 'imagined_return')} | {p['return_error']:+.2f} |"
        for n, p in stats["policies"].items()
    ]
    return "\n".join(
        [
            "| policy | loop | real success | imagined success | real return [95% CI] | imagined return [95% CI] | error |",
            "|---|---|---|---|---|---|---|",
            *rows,
            f"\n{stats['loop']} loop: Pearson r {stats['pearson_r']:.3f}, Spearman rho {stats['spearman_rho']:.3f}, MMRV "
            f"{stats['mmrv']:.3f} (normalised {stats['normalized_mmrv']:.3f}), success Pearson r {success_r}"
            + (
                ""
                if stats["success_max_abs_error"] is None
                else f", max |imagined - real success| {stats['success_max_abs_error']:.2f} ({stats['success_source']})"
            )
            + " "
            f"(returns over steps {first}..{last - 1}, {episodes} episodes per policy)"
            + ("" if not stats.get("caveat") else f"\n{stats['caveat']}"),
        ]
    )


def episode_goals(episodes, observer) -> np.ndarray | None:
    """(N, G) the episodes' goals where the task is goal-based (its state observation needs them)."""
    if observer is None or not observer.goal_based:
        return None
    if any(e.goal is None for e in episodes):
        raise ValueError(
            "these episodes hold no goals (recorded before files kept them), which the task's state observation needs: record them again."
        )
    return np.stack([e.goal for e in episodes])


def interval(p: dict, key: str) -> str:
    return f"{p[key]:.2f} [{p[key + '_ci'][0]:.2f}, {p[key + '_ci'][1]:.2f}]"


def evaluate_policies(cfg: DictConfig, wm: WorldModel, out: Path) -> dict:
    from envs.mujoco.recording import record_episode

    if cfg.loop not in ("closed", "open", "both"):
        raise ValueError(f"loop must be closed (the protocol), open (replay the real actions: a diagnostic) or both, got {cfg.loop!r}.")
    preset, specs, names, observer = policy_setup(cfg, wm)
    env = make_task_env(preset)
    policies = [s.build(env) for s in specs]  # unknown names raise here, before any work
    copies = imagined_copies(specs, observer, preset) if cfg.loop != "open" else None
    episodes = []
    with tqdm(total=len(specs) * cfg.policy_episodes, unit="ep", desc="real MuJoCo episodes") as bar:
        for policy in policies:
            for j in range(cfg.policy_episodes):
                episodes.append(record_episode(env, policy, cfg.seed + j))  # same seeds: same initial states per policy
                bar.update(1)
    env.close()
    goals = episode_goals(episodes, observer)
    loops = ["closed", "open"] if cfg.loop == "both" else [cfg.loop]
    results = {
        loop: evaluate_in_imagination(
            wm,
            names,
            episodes,
            cfg.batch_size,
            cfg.seed,
            preset.success_from_reward,
            lambda batches, loop=loop: tqdm(batches, unit="batch", desc=f"imagined episodes ({loop} loop)"),
            copies,
            loop,
            observer,
            goals,
        )
        for loop in loops
    }
    stats = results[loops[0]]
    plot_returns(
        names,
        np.asarray(stats["real_returns"]),
        np.asarray(stats["imagined_returns"]),
        out / "returns.png",
        f"{stats['loop']} loop: r={stats['pearson_r']:.2f} rho={stats['spearman_rho']:.2f} MMRV={stats['mmrv']:.2f} "
        f"({stats['normalized_mmrv']:.3f} of the range)",
        np.asarray([p["real_return_ci"] for p in stats["policies"].values()]),
        np.asarray([p["imagined_return_ci"] for p in stats["policies"].values()]),
    )
    table = "\n\n".join(policies_table(results[loop], cfg.policy_episodes) for loop in loops)
    beside = {"open_loop": results["open"]} if cfg.loop == "both" else {}
    return {"mode": "policies", "task": preset.name, "episodes_per_policy": cfg.policy_episodes, **stats, **beside, "table": table}


def score_policies(cfg: DictConfig, wm: WorldModel, out: Path) -> dict:
    """Policies scored in imagination alone: no real episode is run."""
    from worldmodel.data.reader import RolloutReader

    preset, specs, names, observer = policy_setup(cfg, wm)
    copies = imagined_copies(specs, observer, preset)
    if cfg.score_starts < 1:
        raise ValueError(f"score_starts must be >= 1, got {cfg.score_starts}.")
    rng = np.random.default_rng(cfg.seed)
    goals = None
    if cfg.data:  # real start contexts: the first K frames of the file's episodes
        with RolloutReader(cfg.data) as reader:
            wm.spec.check_data(cfg.data, reader.metadata["task"], list(reader.frame_shape), "score from starts of the model's task.")
            chosen = sorted(rng.permutation(reader.num_episodes)[: cfg.score_starts].tolist())
            episodes = [reader.episode(i) for i in chosen]
        starts, source, goals = episode_window(wm, episodes), f"{len(episodes)} episodes of {cfg.data}", episode_goals(episodes, observer)
    else:
        starts, source = wm.window(*wm.random_start(cfg.score_starts, rng)), f"{cfg.score_starts} draws from the checkpoint's start bank"
        if observer is not None and observer.goal_based:
            goals = None if "goals" not in wm.start_bank else wm.start_bank["goals"].numpy()
    steps = cfg.score_steps or preset.episode_steps - wm.context + 1  # the steps the validation protocol scores
    logger.info("scoring %d policies in imagination from %s, %d steps each", len(names), source, steps)
    result = score_in_imagination(
        wm,
        names,
        copies,
        starts,
        steps,
        observer,
        goals,
        cfg.seed,
        cfg.batch_size,
        preset.success_from_reward,
        lambda batches: tqdm(batches, unit="batch", desc="imagined episodes"),
    )
    rows = [
        f"| {n} | {interval(p, 'imagined_return')} | "
        + (
            "n/a"
            if p["imagined_success"] is None
            else f"{p['imagined_success']:.2f} [{p['imagined_success_ci'][0]:.2f}, {p['imagined_success_ci'][1]:.2f}]"
        )
        + " |"
        for n, p in result["policies"].items()
    ]
    table = "\n".join(
        [
            "| policy | imagined return [95% CI] | imagined success [95% CI] |",
            "|---|---|---|",
            *rows,
            f"\n(closed loop in imagination only, {result['starts']} starts ({source}), {steps} steps each"
            + ("" if result["success_source"] is None else f", success from the {result['success_source']}")
            + ")",
        ]
    )
    return {"mode": "score", "task": preset.name, "start_source": source, **result, "table": table}


@hydra.main(config_path="../configs", config_name="evaluate", version_base=None)
def main(cfg: DictConfig) -> None:
    check_counts(
        cfg,
        episodes=1,
        videos=0,
        batch_size=1,
        seed=0,
        probe_steps=1,
        policy_episodes=1,
        policy_episode_steps=1,
        score_starts=1,
        score_steps=1,
        first_frame=0,
        sampler_steps=1,
    )
    if cfg.mode not in MODES:
        raise ValueError(f"Unknown mode {cfg.mode!r}; choose one of {list(MODES)}.")
    wm = WorldModel.load(cfg.checkpoint, device=cfg.device, **({"steps": cfg.sampler_steps} if cfg.sampler_steps else {}))
    out = Path(cfg.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = {"fidelity": evaluate_fidelity, "policies": evaluate_policies, "score": score_policies}[cfg.mode](cfg, wm, out)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed evaluation leaves no empty output folder behind
        raise
    result |= {"checkpoint": str(cfg.checkpoint), "config": OmegaConf.to_container(cfg, resolve=True)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    print(result["table"])
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
