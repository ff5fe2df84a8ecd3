"""Play a policy inside DiffusionWorld-v0 and save the imagined episodes as an mp4.

    python tools/imagine.py checkpoint=pretrained/reacher.pt policy=random episodes=2 out=outputs/imagined.mp4
    python tools/imagine.py checkpoint=pretrained/reacher.pt policy=expert out=outputs/expert.mp4

Any policy plays closed loop: pixel policies on the imagined frames; with a state track, state
policies on the task's observation of the imagined state and scripted ones on a shadow put in it.
"""

import logging
from pathlib import Path

import gymnasium as gym
import hydra
import imageio.v3 as iio
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

import envs  # registers DiffusionWorld-v0
from worldmodel.checks import check_counts

logger = logging.getLogger("imagine")


@hydra.main(config_path="../configs", config_name="imagine", version_base=None)
def main(cfg: DictConfig) -> None:
    check_counts(cfg, episodes=1, steps=1, seed=0, scale=1, fps=1, sampler_steps=1)
    from envs.mujoco.recording import PolicySpec
    from worldmodel.policy import policy_action

    if len(cfg.policy.components) != 1:
        raise ValueError(f"imagine.py plays one policy, got a mixture of {len(cfg.policy.components)}: pass policy=NAME.")
    spec = PolicySpec(cfg.policy.components[0].name, cfg.policy.components[0].get("eps"))
    kwargs = dict(
        checkpoint=cfg.checkpoint,
        sampler_steps=cfg.sampler_steps,
        device=cfg.device,
        render_mode="rgb_array",
        render_scale=cfg.scale,
        max_episode_steps=cfg.steps,
    )
    env = gym.make("DiffusionWorld-v0", **kwargs)
    if env.unwrapped.model.state_shape is not None:  # state and scripted policies act on the imagined state
        env.close()
        env = gym.make("DiffusionWorld-v0", observation="both", **kwargs)
        policy = spec.build(env.unwrapped.shadow)
    else:
        policy = spec.build(envs.make_task_env(envs.get_task(env.unwrapped.model.spec.task)))
        if policy.observes != "pixels" and spec.name not in ("random", "zero"):
            raise ValueError(
                f"{spec} observes the simulator's state, which this model does not imagine (no state track): "
                "play random, zero or a pixel policy, or train a model with the state track."
            )
    space = env.action_space
    frames = []
    for episode in range(cfg.episodes):
        obs, _ = env.reset(seed=cfg.seed + episode)
        policy.reset(np.random.default_rng(cfg.seed + episode))
        frames.append(env.render())
        episode_return, done, step = 0.0, False, 0
        with tqdm(total=cfg.steps or env.unwrapped.max_episode_steps, unit="step", desc=f"episode {episode}") as bar:
            while not done:
                seen = obs if not isinstance(obs, dict) else obs["pixels"] if policy.observes == "pixels" else obs["state"]
                action = policy_action(policy, seen, {"step": step}, space.low, space.high)
                obs, reward, terminated, truncated, _ = env.step(action)
                frames.append(env.render())
                episode_return += reward
                done, step = terminated or truncated, step + 1
                bar.update(1)
        logger.info("episode %d: %d steps, imagined return %.3f", episode, bar.n, episode_return)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(cfg.out, np.stack(frames), fps=cfg.fps, macro_block_size=1)
    logger.info("wrote %d frames to %s", len(frames), cfg.out)


if __name__ == "__main__":
    main()
