"""Train a zoo of graded learned policies (Stable-Baselines3) on a real MuJoCo task, or entirely in
a world model's imagination (imagination.checkpoint=...); either way they are scored in real MuJoCo.

    python tools/train_policies.py task=reacher out=zoo/reacher
    python tools/evaluate.py mode=policies checkpoint=pretrained/reacher.pt out=eval/zoo zoo=zoo/reacher
    python tools/train_policies.py task=reacher out=zoo/reacher_imagined imagination.checkpoint=pretrained/reacher.pt \
        'state.budgets=[20000]' 'pixels.budgets=[]'

Writes out/<algo>_<state|pixels>_<steps>.zip and out/policies.yaml (the snapshots with their real
mean return and success), and prints a table.
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs import get_task
from envs.policy_zoo import score_members, train_snapshots, write_index
from worldmodel.checks import check_counts

logger = logging.getLogger("train_policies")


def imagined_env(cfg: DictConfig, preset, observes: str):
    """The SB3 VecEnv of `cfg.imagination`'s world model for the task, or None (train on the real task)."""
    if not cfg.imagination.checkpoint:
        return None
    from envs.sb3 import imagined_vec_env

    env = imagined_vec_env(cfg.imagination.checkpoint, cfg.imagination.num_envs, observes, bf16=cfg.imagination.bf16)
    if env.env.model.spec.task_name != preset.name:
        raise ValueError(
            f"{cfg.imagination.checkpoint} models task {env.env.model.spec.task_name!r}, not {preset.name!r}: "
            f"pass task={env.env.model.spec.task_name}."
        )
    env.seed(cfg.seed)
    return env


@hydra.main(config_path="../configs", config_name="train_policies", version_base=None)
def main(cfg: DictConfig) -> None:
    check_counts(cfg, seed=0, score_episodes=1)
    preset = get_task(OmegaConf.to_container(cfg.task, resolve=True))
    members = []
    for observes in ("state", "pixels"):
        kind = cfg[observes]
        if kind.budgets:
            where = "real MuJoCo" if not cfg.imagination.checkpoint else f"imagination ({cfg.imagination.checkpoint})"
            members += train_snapshots(
                preset,
                observes,
                list(kind.budgets),
                cfg.out,
                kind.algo,
                OmegaConf.to_container(kind.hyperparameters),
                cfg.seed,
                lambda b, o=observes, a=kind.algo: tqdm(b, unit="snapshot", desc=f"{a} on {o} in {where}"),
                imagined_env(cfg, preset, observes),
            )
    if not members:
        raise ValueError("state.budgets and pixels.budgets are both empty: nothing to train.")
    scores = score_members(preset, members, cfg.score_episodes)
    index = write_index(cfg.out, members, scores, preset.name)
    print(
        "\n".join(
            [
                "| policy | env steps | real return | real success |",
                "|---|---|---|---|",
                *(f"| {m.label} | {m.steps} | {s['real_return']:.2f} | {s['real_success']:.2f} |" for m, s in zip(members, scores)),
            ]
        )
    )
    logger.info("wrote %d policies to %s", len(members), index)


if __name__ == "__main__":
    main()
