"""Play a policy inside DiffusionWorld-v0 and save the imagined episodes as an mp4.

    python tools/imagine.py checkpoint=runs/reacher/model.pt policy=random episodes=2 out=outputs/imagined.mp4
    python tools/imagine.py checkpoint=runs/reacher/model.pt policy=zero out=outputs/still.mp4
"""

import logging
from pathlib import Path

import gymnasium as gym
import hydra
import imageio.v3 as iio
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

import envs  # noqa: F401  (registers DiffusionWorld-v0)

logger = logging.getLogger("imagine")
POLICIES = ("random", "zero")


@hydra.main(config_path="../configs", config_name="imagine", version_base=None)
def main(cfg: DictConfig) -> None:
    names = [c.name for c in cfg.policy.components]
    if len(names) != 1 or names[0] not in POLICIES:
        raise ValueError(f"imagine.py plays one of {list(POLICIES)} (policy=random): scripted experts need the real simulator's state; got {names}.")
    policy = names[0]
    env = gym.make("DiffusionWorld-v0", checkpoint=cfg.checkpoint, sampler_steps=cfg.sampler_steps, device=cfg.device,
                   render_mode="rgb_array", render_scale=cfg.scale, max_episode_steps=cfg.steps)
    env.action_space.seed(cfg.seed)
    frames = []
    for episode in range(cfg.episodes):
        env.reset(seed=cfg.seed + episode)
        frames.append(env.render())
        episode_return, done = 0.0, False
        with tqdm(total=cfg.steps or env.unwrapped.max_episode_steps, unit="step", desc=f"episode {episode}") as bar:
            while not done:
                action = env.action_space.sample() if policy == "random" else np.zeros(env.action_space.shape, np.float32)
                _, reward, terminated, truncated, _ = env.step(action)
                frames.append(env.render())
                episode_return += reward
                done = terminated or truncated
                bar.update(1)
        logger.info("episode %d: %d steps, imagined return %.3f", episode, bar.n, episode_return)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(cfg.out, np.stack(frames), fps=cfg.fps, macro_block_size=1)
    logger.info("wrote %d frames to %s", len(frames), cfg.out)


if __name__ == "__main__":
    main()
