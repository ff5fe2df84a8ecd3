"""Evaluate a world model on held-out data (fidelity) or as a policy evaluator (policies).

    python tools/evaluate.py checkpoint=runs/reacher/model.pt data=data/reacher_val.h5 out=eval/reacher
    python tools/evaluate.py mode=policies checkpoint=runs/reacher/model.pt out=eval/reacher_policies policy_episodes=10

Writes out/metrics.json, plots and (fidelity) a side-by-side video, and prints a summary table.
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

from worldmodel.data.reader import RolloutReader
from worldmodel.data.windows import split_episodes
from worldmodel.evaluation.fidelity import rollout_fidelity
from worldmodel.evaluation.metrics import pearson
from worldmodel.evaluation.plots import plot_fidelity, plot_returns
from worldmodel.evaluation.policy_eval import policy_statistics
from worldmodel.rollout import WorldModel
from worldmodel.training.trainer import dataset_fingerprint

logger = logging.getLogger("evaluate")
MODES = ("fidelity", "policies")


def load_model(cfg: DictConfig) -> WorldModel:
    overrides = {"steps": cfg.sampler_steps} if cfg.sampler_steps else {}
    return WorldModel.load(cfg.checkpoint, device=cfg.device, **overrides)


def held_out_episodes(wm: WorldModel, data: Path) -> tuple[list[int], str]:
    """The data's episodes to evaluate on: all of a separate file; the held-out split of the training file."""
    with RolloutReader(data) as reader:
        if reader.num_episodes == 0:
            raise ValueError(f"{data} holds no episodes; record some with tools/record_rollouts.py.")
        task, shape, n = reader.metadata["task"], list(reader.frame_shape), reader.num_episodes
    if task != wm.metadata.get("task") or shape != list(wm.frame_shape):
        raise ValueError(f"{data} holds task {task!r} frames {shape}, but the checkpoint models task "
                         f"{wm.metadata.get('task')!r} frames {list(wm.frame_shape)}; evaluate on data of the model's task.")
    trained_on = wm.metadata.get("provenance", {}).get("dataset", {}).get("sha256")
    if trained_on == dataset_fingerprint(data)["sha256"]:
        window = wm.metadata["config"]["window"]
        return list(split_episodes(n, window["val_fraction"], window["split_seed"])["val"]), "the checkpoint's held-out split"
    return list(range(n)), "all episodes (a file the model was not trained on)"


def evaluate_fidelity(cfg: DictConfig, wm: WorldModel, out: Path) -> dict:
    if not cfg.data:
        raise ValueError("mode=fidelity needs data=PATH: held-out rollouts of the model's task.")
    episodes, which = held_out_episodes(wm, Path(cfg.data))
    logger.info("imagining %d episodes of %s (%s)", min(len(episodes), cfg.episodes), cfg.data, which)
    result = rollout_fidelity(wm, cfg.data, episodes, list(cfg.horizons), cfg.episodes, out / "side_by_side.mp4", cfg.seed, cfg.videos)
    dropped = [h for h in cfg.horizons if h not in result["horizons"]]
    if dropped:
        logger.warning("horizons %s are longer than the episodes allow after %d context frames; record longer episodes "
                       "(task.episode_steps=...) to measure them", dropped, wm.context)
    plot_fidelity(result["curves"], out / "fidelity.png", f"{wm.metadata.get('task')}: {len(result['episodes'])} held-out episodes")
    rows = [f"| {h} | {result['psnr'][h]:.2f} | {result['copy_last_psnr'][h]:.2f} | {result['ssim'][h]:.3f} | "
            f"{result['copy_last_ssim'][h]:.3f} | {result['flicker'][h]:.2f} | {result['copy_last_flicker'][h]:.2f} |"
            for h in result["horizons"]]
    table = "\n".join(["| horizon | PSNR | copy-last PSNR | SSIM | copy-last SSIM | flicker | copy-last flicker |",
                       "|---|---|---|---|---|---|---|", *rows])
    return {"mode": "fidelity", "data": str(cfg.data), "split": which, **result, "table": table}


def evaluate_policies(cfg: DictConfig, wm: WorldModel, out: Path) -> dict:
    from envs import get_task
    from envs.policies import make_policy
    from envs.recording import PolicySpec, record_episode
    from envs.tasks import PixelTaskEnv

    task = wm.metadata.get("task")
    specs = [PolicySpec(**p) for p in cfg.policies]
    policies = [make_policy(s.name, task, s.eps) for s in specs]  # unknown names raise here, before any work
    names = [s.name if s.eps is None else f"{s.name}(eps={s.eps})" for s in specs]
    steps_override = {"episode_steps": cfg.policy_episode_steps} if cfg.policy_episode_steps else {}
    preset = get_task(task, frame_size=tuple(wm.frame_shape[:2]), **steps_override)
    env = PixelTaskEnv(preset)
    k = wm.context
    episodes = []
    with tqdm(total=len(specs) * cfg.policy_episodes, unit="ep", desc="real MuJoCo episodes") as bar:
        for policy in policies:
            for j in range(cfg.policy_episodes):
                episodes.append(record_episode(env, policy, cfg.seed + j))  # same seeds: same initial states per policy
                bar.update(1)
    env.close()
    steps = min(len(e.actions) for e in episodes)
    frames = torch.from_numpy(np.stack([e.frames[:k] for e in episodes]))
    actions = torch.from_numpy(np.stack([e.actions[:steps] for e in episodes]))
    real = np.stack([e.rewards[k - 1 : steps].sum() for e in episodes]).reshape(len(specs), -1)
    rewards = []
    generator = torch.Generator().manual_seed(cfg.seed)
    for start in tqdm(range(0, len(episodes), cfg.batch_size), unit="batch", desc="imagined episodes"):
        rows = slice(start, start + cfg.batch_size)
        rewards.append(wm.imagine(frames[rows], actions[rows, : k - 1], actions[rows, k - 1 :], generator).rewards.numpy())
    rewards = np.concatenate(rewards)  # (P*M, steps-K+1)
    imagined = rewards.sum(1).reshape(len(specs), -1)
    stats = policy_statistics(names, real, imagined)
    # Success is the task's test at the last step: in imagination, on the distance the last predicted reward implies.
    real_success = np.asarray([e.success[-1] for e in episodes]).reshape(len(specs), -1).mean(1)
    imagined_success = preset.success_from_reward(rewards[:, -1], actions[:, -1].numpy())
    if imagined_success is not None:
        imagined_success = imagined_success.reshape(len(specs), -1).mean(1)
    for p, name in enumerate(names):
        stats["policies"][name]["real_success"] = float(real_success[p])
        stats["policies"][name]["imagined_success"] = None if imagined_success is None else float(imagined_success[p])
    # As WorldGym reports it: the correlation of per-policy success rates (None where either side is constant).
    success_r = float("nan") if imagined_success is None else pearson(real_success, imagined_success)
    stats["success_pearson_r"] = None if np.isnan(success_r) else success_r
    plot_returns(names, real, imagined, out / "returns.png",
                 f"r={stats['pearson_r']:.2f} rho={stats['spearman_rho']:.2f} MMRV={stats['mmrv']:.2f}")
    rows = [f"| {n} | {p['real_success']:.2f} | {'n/a' if p['imagined_success'] is None else format(p['imagined_success'], '.2f')} "
            f"| {p['real_return']:.2f} | {p['imagined_return']:.2f} | {p['return_error']:+.2f} |" for n, p in stats["policies"].items()]
    table = "\n".join(["| policy | real success | imagined success | real return | imagined return | error |", "|---|---|---|---|---|---|", *rows,
                       f"\nPearson r {stats['pearson_r']:.3f}, Spearman rho {stats['spearman_rho']:.3f}, MMRV {stats['mmrv']:.3f}, "
                       f"success Pearson r {success_r:.3f} "
                       f"(returns over steps {k - 1}..{steps - 1}, {cfg.policy_episodes} episodes per policy)"])
    return {"mode": "policies", "task": task, "episodes_per_policy": cfg.policy_episodes, "scored_steps": [k - 1, steps],
            "real_returns": real.tolist(), "imagined_returns": imagined.tolist(), **stats, "table": table}


@hydra.main(config_path="../configs", config_name="evaluate", version_base=None)
def main(cfg: DictConfig) -> None:
    if cfg.mode not in MODES:
        raise ValueError(f"Unknown mode {cfg.mode!r}; choose one of {list(MODES)}.")
    wm = load_model(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    result = (evaluate_fidelity if cfg.mode == "fidelity" else evaluate_policies)(cfg, wm, out)
    result |= {"checkpoint": str(cfg.checkpoint), "config": OmegaConf.to_container(cfg, resolve=True)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    print(result["table"])
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
