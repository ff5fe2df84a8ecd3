"""Train a zoo of graded learned policies (Stable-Baselines3) on a real MuJoCo task.

    python tools/train_policies.py task=reacher out=zoo/reacher
    python tools/evaluate.py mode=policies checkpoint=runs/reacher/model.pt out=eval/zoo zoo=zoo/reacher

Writes out/<algo>_<state|pixels>_<steps>.zip and out/policies.yaml (the snapshots with their real
mean return and success), and prints a table.
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs import get_task
from envs.policy_zoo import score_members, train_snapshots, write_index

logger = logging.getLogger("train_policies")


@hydra.main(config_path="../configs", config_name="train_policies", version_base=None)
def main(cfg: DictConfig) -> None:
    preset = get_task(OmegaConf.to_container(cfg.task, resolve=True))
    members = []
    for observes in ("state", "pixels"):
        kind = cfg[observes]
        if kind.budgets:
            members += train_snapshots(preset, observes, list(kind.budgets), cfg.out, kind.algo, OmegaConf.to_container(kind.hyperparameters),
                                       cfg.seed, lambda b, o=observes, a=kind.algo: tqdm(b, unit="snapshot", desc=f"{a} on {o}"))
    if not members:
        raise ValueError("state.budgets and pixels.budgets are both empty: nothing to train.")
    scores = score_members(preset, members, cfg.score_episodes)
    index = write_index(cfg.out, members, scores, preset.name)
    print("\n".join(["| policy | env steps | real return | real success |", "|---|---|---|---|",
                     *(f"| {m.label} | {m.steps} | {s['real_return']:.2f} | {s['real_success']:.2f} |" for m, s in zip(members, scores))]))
    logger.info("wrote %d policies to %s", len(members), index)


if __name__ == "__main__":
    main()
