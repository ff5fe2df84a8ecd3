"""DiffusionWorld's native vector env as a Stable-Baselines3 `VecEnv`, so SB3 agents learn in
imagination on N worlds stepped in one batched forward pass (not N copies of the model).

    from stable_baselines3 import SAC
    from envs.sb3 import imagined_vec_env

    env = imagined_vec_env("pretrained/reacher.pt", num_envs=16, observation="state")
    agent = SAC("MlpPolicy", env).learn(20_000)

SB3 resets a finished world within the same step and hands its last observation over in
info["terminal_observation"] (a truncation is flagged "TimeLimit.truncated", so off-policy agents
bootstrap through it); gymnasium's vector env resets it on the next step instead, so the adapter
resets finished worlds at once with a reset mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as error:
    raise ImportError(f"envs.sb3 needs Stable-Baselines3 ({error}): pip install -e '.[rl]'.") from error

from envs.diffusion_world import DiffusionWorldVectorEnv


def _row(obs: Any, i: int) -> Any:
    return {k: np.array(v[i]) for k, v in obs.items()} if isinstance(obs, dict) else np.array(obs[i])


class ImaginedVecEnv(VecEnv):
    """A `DiffusionWorldVectorEnv` seen through SB3's VecEnv API."""

    def __init__(self, env: DiffusionWorldVectorEnv):
        self.env = env  # before VecEnv's own set-up, which reads render_mode through get_attr
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, infos = self.env.reset(seed=seeds)
        self._reset_seeds()
        self.reset_infos = [{k: v[i] for k, v in infos.items() if not k.startswith("_")} for i in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        done = terminated | truncated
        infos = [{"TimeLimit.truncated": bool(truncated[i] and not terminated[i])} for i in range(self.num_envs)]
        if done.any():
            for i in np.flatnonzero(done):
                infos[i]["terminal_observation"] = _row(obs, i)
            obs, _ = self.env.reset(options={"reset_mask": done})
        return obs, rewards.astype(np.float32), done, infos

    def close(self) -> None:
        self.env.close()

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.env, method_name)(*method_args, **method_kwargs)] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))


def imagined_vec_env(checkpoint: str, num_envs: int = 16, observation: str = "state", **kwargs: Any) -> ImaginedVecEnv:
    """SB3's view of `num_envs` imagined worlds of `checkpoint` (kwargs: `DiffusionWorldVectorEnv`'s)."""
    return ImaginedVecEnv(DiffusionWorldVectorEnv(num_envs, checkpoint, observation=observation, **kwargs))
