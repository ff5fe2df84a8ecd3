"""Gymnasium-Robotics' tasks (the Fetch arm) made under the mujoco this project uses.

Name an env by this module, `envs.mujoco.robotics:FetchPush-v4`: gymnasium imports the module,
which registers Gymnasium-Robotics' envs and mends its joint helpers first. Those (1.4.2) test a
joint's type with `jnt_type[j] in (mjJNT_HINGE, mjJNT_SLIDE)`, which is False for every joint
under mujoco >= 3.3 (its enum members no longer compare equal to numpy integers from the left),
so making any Fetch env fails an assertion. MuJoCo's named views read and write a joint's qpos
and qvel slices whatever its type, which is all the helpers have to do.
"""

from __future__ import annotations

import contextlib
import io

import gymnasium as gym
import mujoco
import numpy as np

# Importing prints a release notice about the Adroit hand's rewards to stderr, in every tool run and
# recording worker; this project uses none of the Adroit envs.
try:
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics
except ImportError as error:
    raise ImportError(f"The Fetch tasks need Gymnasium-Robotics ({error}): pip install -e '.[robotics]'.") from error
from gymnasium_robotics.utils import mujoco_utils

gym.register_envs(gymnasium_robotics)


def get_joint_qpos(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    return data.joint(name).qpos.copy()


def get_joint_qvel(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    return data.joint(name).qvel.copy()


def set_joint_qpos(model: mujoco.MjModel, data: mujoco.MjData, name: str, value) -> None:
    data.joint(name).qpos[:] = value


def set_joint_qvel(model: mujoco.MjModel, data: mujoco.MjData, name: str, value) -> None:
    data.joint(name).qvel[:] = value


for _helper in (get_joint_qpos, get_joint_qvel, set_joint_qpos, set_joint_qvel):
    setattr(mujoco_utils, _helper.__name__, _helper)
