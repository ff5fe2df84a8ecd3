"""Gymnasium side of DiffusionWorld: MuJoCo task presets rendered to pixels, scripted policies, and
the world model as an environment (DiffusionWorld-v0)."""

import os

# MuJoCo picks its GL backend when first imported: default to headless EGL when there is no display.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

import gymnasium as gym  # noqa: E402

from envs.mujoco.tasks import TASKS, TaskPreset, get_task, make_task_env  # noqa: E402

# gymnasium 1.x has no plugin auto-registration: importing `envs` (or making "envs:DiffusionWorld-v0") registers.
if "DiffusionWorld-v0" not in gym.registry:
    gym.register(
        "DiffusionWorld-v0",
        entry_point="envs.diffusion_world:DiffusionWorldEnv",
        vector_entry_point="envs.diffusion_world:DiffusionWorldVectorEnv",
    )

__all__ = ["TASKS", "TaskPreset", "get_task", "make_task_env"]
