"""Record policy rollouts (scripted, module:attr or sb3:ALGO:path.zip) of a MuJoCo task preset into an HDF5 file.

python tools/record_rollouts.py task=reacher policy=expert episodes=200 seed=0 out=data/reacher.h5
python tools/record_rollouts.py task=pusher policy=noisy_expert policy.eps=0.5 workers=2 out=data/pusher.h5
python tools/record_rollouts.py task=reacher policy=mixture append=true episodes=50 out=data/reacher.h5
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs import get_task
from envs.mujoco.recording import PolicySpec, record_rollouts
from worldmodel.checks import whole_number

logger = logging.getLogger("record_rollouts")


@hydra.main(config_path="../configs", config_name="record", version_base=None)
def main(cfg: DictConfig) -> None:
    preset = get_task(OmegaConf.to_container(cfg.task, resolve=True))
    policies = [PolicySpec(**c) for c in cfg.policy.components]
    episodes = whole_number(cfg.episodes, "episodes", 1)
    frames = successes = 0
    with tqdm(total=episodes, unit="ep", desc=f"recording {preset.name}") as bar:
        for episode in record_rollouts(preset, policies, episodes, cfg.out, cfg.seed, cfg.workers, cfg.append):
            frames += len(episode.frames)
            successes += bool(episode.success[-1])
            bar.update(1)
            elapsed = bar.format_dict["elapsed"] or 1e-9
            bar.set_postfix(frames_per_s=f"{frames / elapsed:.0f}", success=f"{successes / bar.n:.2f}")
    logger.info("wrote %d episodes (%d frames) to %s; final-step success %.2f", episodes, frames, cfg.out, successes / episodes)


if __name__ == "__main__":
    main()
