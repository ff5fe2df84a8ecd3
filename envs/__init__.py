"""Gymnasium side of DiffusionWorld: MuJoCo task presets rendered to pixels and scripted policies."""

import os

# MuJoCo picks its GL backend when first imported: default to headless EGL when there is no display.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from envs.tasks import TASKS, TaskPreset, get_task, make_task_env  # noqa: E402

__all__ = ["TASKS", "TaskPreset", "get_task", "make_task_env"]
