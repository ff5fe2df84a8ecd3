"""Evaluate a world model on held-out data (fidelity) or as a policy evaluator (policies).

    python tools/evaluate.py checkpoint=runs/reacher/model.pt data=data/reacher_val.h5 out=eval/reacher
    python tools/evaluate.py mode=policies checkpoint=runs/reacher/model.pt out=eval/reacher_policies policy_episodes=10
    python tools/evaluate.py mode=policies checkpoint=runs/reacher/model.pt out=eval/zoo \
        'policies=[expert,random,"sb3:PPO:zoo/reacher/ppo_state_50000.zip","mypackage.policies:MyPolicy"]'

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
from worldmodel.evaluation.fidelity import held_out_episodes, rollout_fidelity
from worldmodel.evaluation.plots import plot_fidelity, plot_returns
from worldmodel.evaluation.policy_eval import evaluate_in_imagination
from worldmodel.evaluation.probe import load_or_train_probe
from worldmodel.world_model import WorldModel

logger = logging.getLogger("evaluate")
MODES = ("fidelity", "policies")


def evaluate_fidelity(cfg: DictConfig, wm: WorldModel, out: Path) -> dict:
    if not cfg.data:
        raise ValueError("mode=fidelity needs data=PATH: held-out rollouts of the model's task.")
    episodes, which = held_out_episodes(wm, cfg.data)
    probe, env = None, None
    preset = get_task(wm.spec.task)
    if preset.key_bodies:
        env = make_task_env(preset)
        if cfg.probe:
            probe = load_or_train_probe(wm, env.key_positions, preset.key_bodies, cfg.probe_data, cfg.probe_steps,
                                        progress=lambda steps: tqdm(steps, unit="step", desc="position probe"))
    logger.info("imagining %d episodes of %s (%s)", min(len(episodes), cfg.episodes), cfg.data, which)
    result = rollout_fidelity(wm, cfg.data, episodes, list(cfg.horizons), cfg.episodes, out / "side_by_side.mp4", cfg.seed, cfg.videos,
                              probe, env.key_positions if env else None, cfg.first_frame, preset.key_bodies)
    if env:
        env.close()
    dropped = [h for h in cfg.horizons if h not in result["horizons"]]
    if dropped:
        logger.warning("horizons %s are longer than the episodes allow after %d context frames; record longer episodes "
                       "(task.episode_steps=...) to measure them", dropped, wm.context)
    plot_fidelity(result["curves"], out / "fidelity.png", f"{wm.spec.task_name}: {len(result['episodes'])} held-out episodes")
    rows = [f"| {h} | {result['psnr'][h]:.2f} | {result['copy_last_psnr'][h]:.2f} | {result['ssim'][h]:.3f} | "
            f"{result['copy_last_ssim'][h]:.3f} | {result['flicker'][h]:.2f} | {result['copy_last_flicker'][h]:.2f} |"
            for h in result["horizons"]]
    table = "\n".join(["| horizon | PSNR | copy-last PSNR | SSIM | copy-last SSIM | flicker | copy-last flicker |",
                       "|---|---|---|---|---|---|---|", *rows])
    state = "state_position_cm" in result  # a state track: also the error of the state its frames are drawn from
    if probe is not None:
        rows = [f"| {h} | {body} | {result['position_cm'][body][h]:.2f} | {result['position_floor_cm'][body][h]:.2f} | "
                f"{result['copy_last_position_cm'][body][h]:.2f} |" + (f" {result['state_position_cm'][body][h]:.2f} |" if state else "")
                for body in probe.names for h in result["horizons"]]
        table += "\n\nPosition error (cm) of the key bodies, read off the frames by the probe:\n\n" + "\n".join(
            ["| horizon | body | imagined | probe floor (real frames) | copy-last |" + (" imagined state |" if state else ""),
             "|---|---|---|---|---|" + ("---|" if state else ""), *rows])
    elif state:
        rows = [f"| {h} | {body} | {result['state_position_cm'][body][h]:.2f} |" for body in preset.key_bodies for h in result["horizons"]]
        table += "\n\nPosition error (cm) of the key bodies in the imagined state (probe=false: the frames are not read):\n\n" + \
            "\n".join(["| horizon | body | imagined state |", "|---|---|---|", *rows])
    return {"mode": "fidelity", "data": str(cfg.data), "split": which, **result, "table": table}


def policy_specs(entries) -> list:
    """`policies=[...]` entries: a name (`expert`, `pkg.module:attr`, `sb3:PPO:path.zip`) or a dict
    {name, eps, label}."""
    from envs.mujoco.recording import PolicySpec

    return [PolicySpec(entry) if isinstance(entry, str) else PolicySpec(**entry) for entry in entries]


def evaluate_policies(cfg: DictConfig, wm: WorldModel, out: Path) -> dict:
    from envs.mujoco.policies import lacks_expert
    from envs.mujoco.recording import record_episode
    from envs.policy_zoo import read_index

    # The task exactly as the model's data was recorded (episode length, action repeat, camera).
    preset = get_task(wm.spec.task, **({"episode_steps": cfg.policy_episode_steps} if cfg.policy_episode_steps else {}))
    specs = policy_specs([*cfg.policies, *(read_index(cfg.zoo) if cfg.zoo else [])])
    # The default list leans on the expert: without one, score the rest.
    skipped = [str(s) for s in specs if lacks_expert(s.name, preset.name)]
    specs = [s for s in specs if not lacks_expert(s.name, preset.name)]
    if skipped:
        logger.warning("task %s has no scripted expert: skipping %s (add learned policies with zoo=... or policies=[...])",
                       preset.name, skipped)
    names = [str(s) for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"policies must have distinct names (give a label): {names}.")
    env = make_task_env(preset)
    policies = [s.build(env) for s in specs]  # unknown names raise here, before any work
    episodes = []
    with tqdm(total=len(specs) * cfg.policy_episodes, unit="ep", desc="real MuJoCo episodes") as bar:
        for policy in policies:
            for j in range(cfg.policy_episodes):
                episodes.append(record_episode(env, policy, cfg.seed + j))  # same seeds: same initial states per policy
                bar.update(1)
    env.close()
    stats = evaluate_in_imagination(wm, names, episodes, cfg.batch_size, cfg.seed, preset.success_from_reward,
                                    lambda batches: tqdm(batches, unit="batch", desc="imagined episodes"), policies)
    plot_returns(names, np.asarray(stats["real_returns"]), np.asarray(stats["imagined_returns"]), out / "returns.png",
                 f"r={stats['pearson_r']:.2f} rho={stats['spearman_rho']:.2f} MMRV={stats['mmrv']:.2f} "
                 f"({stats['normalized_mmrv']:.3f} of the range)",
                 np.asarray([p["real_return_ci"] for p in stats["policies"].values()]),
                 np.asarray([p["imagined_return_ci"] for p in stats["policies"].values()]))
    first, last = stats["scored_steps"]
    success_r = (f"{stats['success_pearson_r']:.3f}" if stats["success_pearson_r"] is not None
                 else f"n/a ({stats['success_pearson_r_missing']})")

    def ci(p, key):
        return f"{p[key]:.2f} [{p[key + '_ci'][0]:.2f}, {p[key + '_ci'][1]:.2f}]"

    rows = [f"| {n} | {p['loop']} | {p['real_success']:.2f} | {'n/a' if p['imagined_success'] is None else format(p['imagined_success'], '.2f')} "
            f"| {ci(p, 'real_return')} | {ci(p, 'imagined_return')} | {p['return_error']:+.2f} |" for n, p in stats["policies"].items()]
    table = "\n".join(["| policy | loop | real success | imagined success | real return [95% CI] | imagined return [95% CI] | error |",
                       "|---|---|---|---|---|---|---|", *rows,
                       f"\nPearson r {stats['pearson_r']:.3f}, Spearman rho {stats['spearman_rho']:.3f}, MMRV {stats['mmrv']:.3f} "
                       f"(normalised {stats['normalized_mmrv']:.3f}), success Pearson r {success_r}"
                       + ("" if stats["success_max_abs_error"] is None else
                          f", max |imagined - real success| {stats['success_max_abs_error']:.2f} ({stats['success_source']})") + " "
                       f"(returns over steps {first}..{last - 1}, {cfg.policy_episodes} episodes per policy)"])
    return {"mode": "policies", "task": preset.name, "episodes_per_policy": cfg.policy_episodes, **stats, "table": table}


@hydra.main(config_path="../configs", config_name="evaluate", version_base=None)
def main(cfg: DictConfig) -> None:
    if cfg.mode not in MODES:
        raise ValueError(f"Unknown mode {cfg.mode!r}; choose one of {list(MODES)}.")
    wm = WorldModel.load(cfg.checkpoint, device=cfg.device, **({"steps": cfg.sampler_steps} if cfg.sampler_steps else {}))
    out = Path(cfg.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = (evaluate_fidelity if cfg.mode == "fidelity" else evaluate_policies)(cfg, wm, out)
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
