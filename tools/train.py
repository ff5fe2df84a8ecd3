"""Train the world model on recorded rollouts.

python tools/train.py data=data/reacher.h5 model=spacetime steps=2000 run_dir=runs/reacher
python tools/train.py data=data/reacher.h5 model=framestack run_dir=runs/reacher_fs mixed_precision=no
python tools/train.py data=data/reacher.h5 run_dir=runs/reacher resume=true steps=4000
accelerate launch --num_processes 2 tools/train.py data=data/reacher.h5 run_dir=runs/reacher_ddp
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from worldmodel.training.trainer import train

logger = logging.getLogger("train")


def expectations(task_cfg) -> dict:
    """What the data must hold when a task preset is named (task=reacher): task, frame and action shapes."""
    if task_cfg is None:
        return {}
    from envs import get_task, make_task_env

    env = make_task_env(get_task(OmegaConf.to_container(task_cfg, resolve=True)))
    try:
        return {"task": env.preset.name, "frame_shape": [*env.preset.frame_size, 3], "action_shape": list(env.action_space.shape)}
    finally:
        env.close()


@hydra.main(config_path="../configs", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file, at every save: noise
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # data=..., run_dir=... are required
    plain["expect"] = expectations(cfg.get("task"))
    plain.pop("task", None)
    path = train(plain)
    logger.info("model written to %s", path)


if __name__ == "__main__":
    main()
