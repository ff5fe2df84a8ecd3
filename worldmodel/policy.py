"""The policy interface that recording and policy evaluation take, and policies named by reference.

A policy acts on one env's observation: `reset(rng)` at the start of an episode, then
`act(obs, info) -> action` each step. It declares what it observes:
- "state": the source task env's own observation vector (what a gymnasium MuJoCo env returns;
  `info["state"]` of `PixelTaskEnv`). In imagination it sees that env's observation of the
  imagined state (`envs.mujoco.observations`).
- "pixels": the (H, W, 3) uint8 frame. In imagination it acts on imagined frames as it acts on
  rendered ones.

Besides the scripted names of a task (`envs.mujoco.policies`), a policy is named by reference:
`package.module:attribute` (a `Policy` subclass or instance, a class or factory called with no
arguments that returns a policy, or a plain function `(obs, info) -> action`), or
`sb3:ALGO:path.zip` (a Stable-Baselines3 checkpoint, deterministic actions).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

OBSERVES = ("state", "pixels")


class Policy:
    """Base class: override `act` (and `reset` for per-episode state; keep its rng for sampling)."""

    name = "policy"
    observes = "state"

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class FunctionPolicy(Policy):
    """A plain function `(obs, info) -> action` as a stateless policy; what it observes is its
    `observes` attribute (default "state")."""

    def __init__(self, fn: Callable[[np.ndarray, dict], np.ndarray], name: str):
        self.fn, self.name = fn, name
        self.observes = getattr(fn, "observes", "state")

    def act(self, obs, info):
        return self.fn(obs, info)


class SB3Policy(Policy):
    """A Stable-Baselines3 checkpoint's deterministic policy. It observes pixels when it was trained
    on images (its observation space is an image), else the state vector."""

    def __init__(self, algo: str, path: str | Path, name: str | None = None):
        try:
            import stable_baselines3
            from stable_baselines3.common.preprocessing import is_image_space
        except ImportError as error:
            raise ImportError("sb3: policies need stable-baselines3: pip install 'stable-baselines3>=2.4'.") from error
        algorithm = getattr(stable_baselines3, algo.upper(), None)
        if algorithm is None or not hasattr(algorithm, "load"):
            known = [n for n in ("A2C", "DDPG", "DQN", "PPO", "SAC", "TD3") if hasattr(stable_baselines3, n)]
            raise ValueError(f"sb3:{algo}: unknown Stable-Baselines3 algorithm; known: {known}.")
        if not Path(path).is_file():
            raise FileNotFoundError(f"sb3:{algo}:{path}: no such checkpoint (a .zip saved by model.save()).")
        self.model = algorithm.load(path, device="cpu")
        self.name = name or f"sb3:{algo}:{path}"
        self.observes = "pixels" if is_image_space(self.model.observation_space, check_channels=False) else "state"

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.model.observation_space.shape)

    def act(self, obs, info):
        return self.model.predict(obs, deterministic=True)[0]


def policy_action(policy: Policy, obs: np.ndarray, info: dict[str, Any], low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """policy.act(obs, info) as a float32 action clipped to the box [low, high], as MuJoCo clips
    controls to their range; ValueError naming the policy for a wrong shape or NaN/inf."""
    action = np.asarray(policy.act(obs, info), np.float32)
    if action.shape != np.shape(low) or not np.isfinite(action).all():
        raise ValueError(
            f"policy {policy.name!r} returned {action.shape} action {action.ravel()[:8]}; the task takes finite actions of "
            f"shape {np.shape(low)}."
        )
    return np.clip(action, low, high)


def describe_policy(policy: Policy) -> dict[str, Any]:
    """What a recorded file stores about a policy (any object with `act`): its `describe()`, or its
    name; compact, as the file's index has 128 bytes per episode."""
    description = policy.describe() if hasattr(policy, "describe") else {"name": str(getattr(policy, "name", type(policy).__name__))}
    name = str(description.get("name", ""))
    return description if len(name) <= 96 else {**description, "name": "..." + name[-93:]}


def is_reference(name: str) -> bool:
    """Whether `name` names a policy by reference (`module:attr` or `sb3:ALGO:path`), not a scripted name."""
    return ":" in name


def load_policy(reference: str) -> Policy:
    """The policy `reference` names: `sb3:ALGO:path.zip` or `package.module:attribute`."""
    if reference.startswith("sb3:"):
        parts = reference.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(
                f"{reference!r}: a Stable-Baselines3 policy is named sb3:ALGO:path.zip, e.g. sb3:PPO:zoo/reacher/ppo_state_100k.zip."
            )
        return SB3Policy(parts[1], parts[2], reference)
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{reference!r}: a policy by reference is package.module:attribute or sb3:ALGO:path.zip.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{reference!r}: cannot import {module_name!r} ({error}); is it on PYTHONPATH?") from error
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{reference!r}: {module_name} has no attribute {attribute!r}.")
        target = getattr(target, part)
    policy = _as_policy(target, reference)
    if policy.observes not in OBSERVES:
        raise ValueError(f"{reference!r}: observes must be one of {OBSERVES}, got {policy.observes!r}.")
    return policy


def _as_policy(target: Any, reference: str) -> Policy:
    if inspect.isclass(target) or (callable(target) and not hasattr(target, "act") and _takes_no_arguments(target)):
        try:
            target = target()  # a class or factory
        except TypeError as error:
            raise ValueError(f"{reference!r}: a policy class or factory is built without arguments, which failed: {error}") from error
    if hasattr(target, "act") and hasattr(target, "reset"):
        if getattr(target, "name", "policy") == "policy":
            target.name = reference
        if not hasattr(target, "observes"):
            target.observes = "state"
        return target
    if callable(target):
        return FunctionPolicy(target, reference)
    raise ValueError(
        f"{reference!r} is neither a policy (reset(rng), act(obs, info)), a class or factory of one, nor a function (obs, info) -> action."
    )


def _takes_no_arguments(fn: Callable) -> bool:
    try:
        return not any(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(fn).parameters.values()
        )
    except (TypeError, ValueError):
        return False
