"""Scripted policies for the task presets: random, zero, expert and noisy_expert.

Experts are privileged: they read simulator state (`env.data`) and drive the arm with
operational-space control (Jacobian transpose of a PD force on the end effector).
"""

from __future__ import annotations

from typing import Any, Callable

import mujoco
import numpy as np

from envs.tasks import PixelTaskEnv


class Policy:
    """Maps the current env state to an action; randomness comes from the generator given at reset."""

    name = "policy"

    def reset(self, env: PixelTaskEnv, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, env: PixelTaskEnv) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class RandomPolicy(Policy):
    name = "random"

    def act(self, env):
        space = env.action_space
        return self.rng.uniform(space.low, space.high).astype(space.dtype)


class ZeroPolicy(Policy):
    name = "zero"

    def act(self, env):
        return np.zeros(env.action_space.shape, env.action_space.dtype)


def _body_jacobian(model: mujoco.MjModel, data: mujoco.MjData, body: str) -> np.ndarray:
    """Translational Jacobian (3, nv) of `body`'s origin."""
    jacp = np.zeros((3, model.nv))
    mujoco.mj_jacBody(model, data, jacp, None, model.body(body).id)
    return jacp


class ReacherExpert(Policy):
    """Two-link inverse kinematics to the target, tracked by a joint-space PD controller.

    Of the two IK solutions (elbow left/right) it keeps the one closer to the current pose.
    """

    name = "expert"
    link1, link2 = 0.1, 0.11  # m, from Reacher's model
    kp, kd = 2.0, 0.15  # action units per rad and per rad/s (the motors' gear is 200)

    def act(self, env):
        data = env.data
        q, qd = data.qpos[:2], data.qvel[:2]
        x, y = data.body("target").xpos[:2] - data.body("body0").xpos[:2]
        reach = np.clip(np.hypot(x, y), 1e-3, self.link1 + self.link2 - 1e-6)
        cos_elbow = (reach**2 - self.link1**2 - self.link2**2) / (2 * self.link1 * self.link2)
        best = None
        for elbow in (np.arccos(np.clip(cos_elbow, -1, 1)), -np.arccos(np.clip(cos_elbow, -1, 1))):
            shoulder = np.arctan2(y, x) - np.arctan2(self.link2 * np.sin(elbow), self.link1 + self.link2 * np.cos(elbow))
            # joint0 is unlimited: take the nearest equivalent angle.
            shoulder = q[0] + (shoulder - q[0] + np.pi) % (2 * np.pi) - np.pi
            error = np.array([shoulder, elbow]) - q
            if best is None or np.abs(error).sum() < np.abs(best).sum():
                best = error
        return np.clip(self.kp * best - self.kd * qd, -1.0, 1.0).astype(np.float32)


class PusherExpert(Policy):
    """Gets the gripper behind the object (as seen from the goal), lowers it, and pushes through.

    The phase is read from state every step, so a lost object sends it back to approach:
    `approach` a point behind the object above the table, `descend` there, then `push` along the
    object-goal line.
    """

    name = "expert"
    kp, kd = 4.0, 0.5  # N m/rad, N m s/rad
    damping, ik_iterations = 0.05, 20
    roll_joints = np.array([0, 0, 1, 0, 1, 0, 1.0])  # upper arm, forearm and wrist roll
    behind = 0.09  # m behind the object's centre, along the object-goal line
    push_height, hover_height = -0.27, -0.15  # m, gripper height (the table is at -0.325)
    push_through = 0.1  # m past the object's centre that the push aims at

    @staticmethod
    def gripper_point(data: mujoco.MjData) -> np.ndarray:
        """Between the gripper's two prong tips, (3,) in metres: the point that pushes."""
        tips = data.body("tips_arm")
        return tips.xpos + tips.xmat.reshape(3, 3) @ np.array([0.1, 0.0, 0.0])

    def target(self, data: mujoco.MjData) -> np.ndarray:
        """Where the gripper should go now, (3,) in metres."""
        tip = self.gripper_point(data)
        obj = data.body("object").xpos[:2]
        direction = data.body("goal").xpos[:2] - obj
        direction /= np.linalg.norm(direction) + 1e-8
        behind_xy = obj - self.behind * direction
        offset = tip[:2] - behind_xy
        along = float(offset @ direction)
        lateral = float(np.linalg.norm(offset - along * direction))
        if lateral < 0.03 and along > -0.03 and tip[2] < self.push_height + 0.04:
            return np.array([*(obj + self.push_through * direction), self.push_height])
        if np.linalg.norm(offset) < 0.03:
            return np.array([*behind_xy, self.push_height])
        return np.array([*behind_xy, self.hover_height])

    def reset(self, env, rng):
        super().reset(env, rng)
        self._scratch = mujoco.MjData(env.unwrapped.model)

    def inverse_kinematics(self, model: mujoco.MjModel, data: mujoco.MjData, target: np.ndarray) -> np.ndarray:
        """Joint angles (7,) within the joint limits that put the gripper at `target` (m).

        Projected damped least squares from the current pose, with a small pull of the roll
        joints towards zero so the gripper stays level.
        """
        scratch = self._scratch
        scratch.qpos[:] = data.qpos
        low, high = model.jnt_range[:7, 0], model.jnt_range[:7, 1]
        body = model.body("tips_arm").id
        jac = np.zeros((3, model.nv))
        for _ in range(self.ik_iterations):
            mujoco.mj_kinematics(model, scratch)
            mujoco.mj_comPos(model, scratch)
            point = self.gripper_point(scratch)
            error = target - point
            mujoco.mj_jac(model, scratch, jac, None, point, body)
            j = jac[:, :7]
            step = j.T @ np.linalg.solve(j @ j.T + self.damping**2 * np.eye(3), error)
            posture = -scratch.qpos[:7] * self.roll_joints
            step += (np.eye(7) - np.linalg.pinv(j) @ j) @ posture * 0.1
            scratch.qpos[:7] = np.clip(scratch.qpos[:7] + step, low, high)
        return scratch.qpos[:7].copy()

    def act(self, env):
        model, data = env.unwrapped.model, env.data
        # Joint-space PD on an IK solution: tracking the gripper in Cartesian space alone stalls
        # at the joint limits when the object is close to the shoulder.
        q_target = self.inverse_kinematics(model, data, self.target(data))
        torque = self.kp * (q_target - data.qpos[:7]) - self.kd * data.qvel[:7]
        return np.clip(torque, -2.0, 2.0).astype(np.float32)


class NoisyExpert(Policy):
    """The expert, replaced by a uniform random action with probability `eps` at each step."""

    name = "noisy_expert"

    def __init__(self, expert: Policy, eps: float):
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"noisy_expert needs eps in [0, 1], got {eps}.")
        self.expert, self.eps, self.random = expert, float(eps), RandomPolicy()

    def reset(self, env, rng):
        super().reset(env, rng)
        self.expert.reset(env, rng)
        self.random.reset(env, rng)

    def act(self, env):
        expert_action = self.expert.act(env)  # always computed, so the stream of rng draws is fixed
        random_action = self.random.act(env)
        return random_action if self.rng.random() < self.eps else expert_action

    def describe(self):
        return {"name": self.name, "eps": self.eps}


EXPERTS: dict[str, Callable[[], Policy]] = {"reacher": ReacherExpert, "pusher": PusherExpert}
POLICIES = ("random", "zero", "expert", "noisy_expert")


def make_policy(name: str, task: str, eps: float | None = None) -> Policy:
    """A scripted policy by name for a task preset; `eps` is noisy_expert's noise level."""
    if name not in POLICIES:
        raise ValueError(f"Unknown policy {name!r}. Known policies: {list(POLICIES)} (or a mixture of them).")
    if name in ("expert", "noisy_expert") and task not in EXPERTS:
        raise ValueError(f"No expert for task {task!r}. Experts exist for {sorted(EXPERTS)}.")
    if name == "random":
        return RandomPolicy()
    if name == "zero":
        return ZeroPolicy()
    if name == "expert":
        return EXPERTS[task]()
    if eps is None:
        raise ValueError("noisy_expert needs eps in [0, 1], e.g. policy.eps=0.3.")
    return NoisyExpert(EXPERTS[task](), eps)
