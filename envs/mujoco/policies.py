"""Scripted policies for the task presets: random, zero, expert, noisy_expert and play (data only).

They implement `worldmodel.policy.Policy` for the env they are built for. Experts are privileged:
they read that env's simulator state (`env.data`) rather than their observation, and drive the arm
with operational-space control. `build_policy` also takes policies by reference (`module:attr`,
`sb3:ALGO:path.zip`) and checks that they fit the env.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np

from envs.mujoco.fetch import FetchPickAndPlaceExpert, FetchPushExpert
from envs.mujoco.tasks import PixelTaskEnv
from worldmodel.policy import Policy, SB3Policy, is_reference, load_policy


class ScriptedPolicy(Policy):
    """A policy that reads the simulator of the env it is built for; obs and info go unused."""

    def __init__(self, env: PixelTaskEnv):
        self.env = env


class RandomPolicy(ScriptedPolicy):
    name = "random"

    def act(self, obs, info):
        space = self.env.action_space
        return self.rng.uniform(space.low, space.high).astype(space.dtype)


class ZeroPolicy(ScriptedPolicy):
    name = "zero"

    def act(self, obs, info):
        space = self.env.action_space
        return np.zeros(space.shape, space.dtype)


class ReacherExpert(ScriptedPolicy):
    """Two-link inverse kinematics to the target, tracked by a joint-space PD controller.

    Of the two IK solutions (elbow left/right) it keeps the one closer to the current pose.
    """

    name = "expert"
    link1, link2 = 0.1, 0.11  # m, from Reacher's model
    kp, kd = 2.0, 0.15  # action units per rad and per rad/s (the motors' gear is 200)

    def act(self, obs, info):
        data = self.env.data
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


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    """A 2D vector rotated counter-clockwise by `angle` (rad)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


class PusherExpert(ScriptedPolicy):
    """Pushes the object to the goal with the inner corner of the gripper's U.

    Pusher-v5's contacts with the object are very soft (its 8e-6 kg mass sets the constraint's
    regulariser), so a push force grows with penetration only, and the object's joint damping
    (0.5 N s/m) caps its speed at roughly 0.04 m/s per contact. The fastest push therefore presses
    the object 5 cm deep into two of the U's capsules at once: the bar and one prong, with the
    prongs turned 45 degrees from the push direction. Of the two corners, the one the arm reaches
    best is chosen at reset.

    Phases, re-decided from state every step: `place` brings the U over the object (centred
    between the prongs) and lowers it as the horizontal error shrinks; once the gripper is down
    with the object in the U, `push` puts the corner point onto the object's centre (so the
    capsules sink into it) and follows the object to the goal, easing off when it gets there.
    Each step solves inverse kinematics for one gripper-frame point with the gripper level and
    heading as wanted (weighted damped least squares that freezes joints at their limits,
    warm-started from the last solution so the arm stays on one branch; the first solve of an
    episode uses many fixed restarts) and tracks it with computed-torque joint PD.
    """

    name = "expert"
    # Joint-space PD in acceleration units, turned into torques with the arm's mass matrix so every
    # joint responds alike (the wrist is far lighter than the shoulder). The action is held for
    # 0.05 s, which bounds the usable bandwidth.
    kp, kd = 100.0, 18.0  # 1/s^2, 1/s
    # Gripper-frame points (m; x along the prongs, y along the bar, from the wrist) put on the
    # object's centre. Pushing: 0.5 cm in front of the bar and 9.5 cm towards a prong, i.e. 6.5 cm
    # into both (bar and prong radius 0.02 + object radius 0.05 = 0.07 at contact); tracking lag
    # leaves about 5 cm, and deeper than 7 cm the contact normal would flip.
    corner = np.array([0.005, 0.095, 0.0])
    rest = np.array([0.07, 0.03, 0.0])  # touching bar and prong without pressing
    # Before pushing: the object centred in the U, 2 cm clear of the bar and 3 cm of each prong,
    # so the gripper can come down around it.
    ahead = np.array([0.09, 0.0, 0.0])
    push_height = -0.275  # m, gripper height when pushing: the object's mid-height
    hover_height = -0.17  # m, capsules (r 0.02) clear the object's top (-0.225) by 3.5 cm
    place_near, place_far = 0.015, 0.04  # m, horizontal errors of fully down and fully up
    low_tolerance = 0.03  # m above push_height still counted as down
    stop_distance = 0.02  # m, object-goal distance at which the push eases off
    # Inverse kinematics: residual weights for [point position (3), prongs level, bar level, heading].
    ik_weights = np.array([1.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    ik_damping, ik_iterations, ik_max_step = 0.03, 15, 0.2  # -, -, rad per iteration
    ik_starts = 24  # random restarts of the first solve of an episode
    depth = 1.0  # how far between `rest` (0) and `corner` (1) the pushing point sinks into the object

    def _goal(self, data) -> np.ndarray:
        """(2,) where the object is pushed to: the task's goal."""
        return data.body("goal").xpos[:2]

    def reset(self, rng):
        super().reset(rng)
        model, data = self.env.unwrapped.model, self.env.data
        self._scratch = mujoco.MjData(model)
        self._low, self._high = model.jnt_range[:7, 0], model.jnt_range[:7, 1]
        # The first solve starts from many postures to find a good branch; the starts come from a
        # fixed generator so the policy is a deterministic function of the state.
        starts = np.random.default_rng(0).uniform(self._low, self._high, (self.ik_starts, 7))
        best = None
        for side in (1.0, -1.0):
            self._side = side
            point, target, heading = self._goal_for(data, "push")
            for q0 in starts:
                q, err = self._solve(model, q0, point, target, heading, 4 * self.ik_iterations)
                if best is None or err < best[1]:
                    best = (q, err, side)
        self._q, _, self._side = best

    def _gripper(self, data_like) -> tuple[np.ndarray, np.ndarray]:
        """Wrist position (3,) and gripper rotation (3, 3) of an MjData."""
        tips = data_like.body("tips_arm")
        return tips.xpos, tips.xmat.reshape(3, 3)

    def _phase(self, data) -> str:
        wrist, rot = self._gripper(data)
        local = rot.T @ (data.body("object").xpos - wrist)  # object centre in the gripper frame
        low = wrist[2] < self.push_height + self.low_tolerance
        # Pushing goes on while the gripper is down with the object in the U.
        if low and -0.02 < local[0] < self.ahead[0] + 0.03 and abs(local[1]) < 0.1:
            return "push"
        return "place"

    def _goal_for(self, data, phase: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gripper-frame point (3,), its target (3,) in m and the prongs' heading (2,)."""
        obj, goal = data.body("object").xpos[:2], self._goal(data)
        to_goal = goal - obj
        distance = np.linalg.norm(to_goal)
        push = to_goal / (distance + 1e-8)
        # `_side` +1 uses the corner left of the prongs (seen from above), which pushes 45 degrees
        # right of them, so the prongs point 45 degrees left of the push; -1 mirrors that. The
        # wrist may be rolled upside down, which swaps which prong is on the left.
        heading = _rotate(push, self._side * np.pi / 4)
        upright = 1.0 if self._gripper(data)[1][2, 2] >= 0 else -1.0
        mirror = np.array([1.0, self._side * upright, 1.0])
        corner = (self.corner + (1.0 - self.depth) * (self.rest - self.corner)) * mirror  # exactly `corner` at depth 1
        if phase == "place":
            # Come down only as the U gets over the object: the height follows the horizontal
            # error, from hover_height at place_far down to push_height at place_near.
            wrist, rot = self._gripper(data)
            error = np.linalg.norm((wrist + rot @ self.ahead)[:2] - obj)
            down = np.clip((self.place_far - error) / (self.place_far - self.place_near), 0.0, 1.0)
            height = self.hover_height + down * (self.push_height - self.hover_height)
            return self.ahead, np.array([*obj, height]), heading
        if distance < self.stop_distance:
            # Back out to bare contact with the bar and prong so the object stops where it is.
            corner = self.rest * mirror
        return corner, np.array([*obj, self.push_height]), heading

    def _solve(self, model, q0, point, target, heading, iterations) -> tuple[np.ndarray, float]:
        """Joint angles (7,) near q0 putting gripper-frame `point` at `target` with the gripper
        level and its prongs along `heading`; returns them with the weighted residual's norm."""
        scratch = self._scratch
        scratch.qpos[:7] = q0
        body = model.body("tips_arm").id
        jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        heading3 = np.array([*heading, 0.0])
        for i in range(iterations + 1):
            mujoco.mj_kinematics(model, scratch)
            mujoco.mj_comPos(model, scratch)
            wrist, rot = self._gripper(scratch)
            x, y = rot[:, 0], rot[:, 1]
            world_point = wrist + rot @ point
            residual = np.array([*(world_point - target), x[2], y[2], x @ heading3 - 1.0]) * self.ik_weights
            if i == iterations:
                break
            mujoco.mj_jac(model, scratch, jacp, jacr, world_point, body)
            jp, jr = jacp[:, :7], jacr[:, :7]
            # d(v)/dq = omega x v: z-components for levelness, projection on the heading.
            jac = np.vstack([jp, jr[0] * x[1] - jr[1] * x[0], jr[0] * y[1] - jr[1] * y[0], np.cross(x, heading3) @ jr])
            jac *= self.ik_weights[:, None]
            q = scratch.qpos[:7]
            # Joints at a limit that the step would push further are frozen and the step solved
            # again: clipping alone would stall the other joints' share of the motion.
            free = np.ones(7, bool)
            for _ in range(3):
                jf = jac * free
                step = -jf.T @ np.linalg.solve(jf @ jf.T + self.ik_damping**2 * np.eye(6), residual)
                blocked = ((q <= self._low + 1e-6) & (step < 0)) | ((q >= self._high - 1e-6) & (step > 0))
                if not blocked.any():
                    break
                free &= ~blocked
            step = np.clip(step, -self.ik_max_step, self.ik_max_step)
            scratch.qpos[:7] = np.clip(q + step, self._low, self._high)
        return scratch.qpos[:7].copy(), float(np.linalg.norm(residual))

    def act(self, obs, info):
        model, data = self.env.unwrapped.model, self.env.data
        point, target, heading = self._goal_for(data, self._phase(data))
        self._q, _ = self._solve(model, self._q, point, target, heading, self.ik_iterations)
        accel = self.kp * (self._q - data.qpos[:7]) - self.kd * data.qvel[:7]
        mass = np.zeros((model.nv, model.nv))
        mujoco.mj_fullM(model, data, mass)
        # The joints' own viscous damping is known, so cancel it too.
        torque = mass[:7, :7] @ accel + model.dof_damping[:7] * data.qvel[:7]
        return np.clip(torque, -2.0, 2.0).astype(np.float32)


class PusherPlay(PusherExpert):
    """Play data for world-model training, never a policy to evaluate: the expert's pushes and the
    contacts it never makes. An expert-only mixture teaches the state track that a gripper at the
    object pushes it to the goal, so a learned policy that only leans on the object is imagined to
    push it there (measured: success 0.62 imagined, 0 real; 0.25 with play data, docs/closed_loop.md).

    Each episode draws where the object is pushed (the goal, or with probability `decoy_p` a point
    10-30 cm from the object in any direction), how deep the push sinks (`depth` uniform in [0, 1]:
    from resting against the object, which barely moves it, to the expert's push) and a rate of
    uniform random actions (0-30 %).
    """

    name = "play"
    decoy_p, decoy_range, max_eps = 0.7, (0.1, 0.3), 0.3

    def reset(self, rng):
        self.depth, self.eps, self._decoy = self.draw(rng)
        super().reset(rng)

    def draw(self, rng: np.random.Generator) -> tuple[float, float, np.ndarray | None]:
        """This episode's push depth in [0, 1], random-action rate and decoy point (2,) (None: the goal)."""
        depth, eps = float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, self.max_eps))
        if rng.random() >= self.decoy_p:
            return depth, eps, None
        angle, distance = rng.uniform(-np.pi, np.pi), rng.uniform(*self.decoy_range)
        return depth, eps, self.env.data.body("object").xpos[:2] + distance * np.array([np.cos(angle), np.sin(angle)])

    def _goal(self, data) -> np.ndarray:
        return super()._goal(data) if self._decoy is None else self._decoy

    def act(self, obs, info):
        action = super().act(obs, info)
        if self.rng.random() < self.eps:
            space = self.env.action_space
            return self.rng.uniform(space.low, space.high).astype(space.dtype)
        return action


class NoisyExpert(ScriptedPolicy):
    """The expert, replaced by a uniform random action with probability `eps` at each step."""

    name = "noisy_expert"

    def __init__(self, env: PixelTaskEnv, expert: Policy, eps: float):
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"noisy_expert needs eps in [0, 1], got {eps}.")
        super().__init__(env)
        self.expert, self.eps, self.random = expert, float(eps), RandomPolicy(env)

    def reset(self, rng):
        super().reset(rng)
        self.expert.reset(rng)
        self.random.reset(rng)

    def act(self, obs, info):
        expert_action = self.expert.act(obs, info)  # always computed, so the stream of rng draws is fixed
        random_action = self.random.act(obs, info)
        return random_action if self.rng.random() < self.eps else expert_action

    def describe(self):
        return {"name": self.name, "eps": self.eps}


EXPERTS: dict[str, Callable[[PixelTaskEnv], Policy]] = {
    "reacher": ReacherExpert,
    "pusher": PusherExpert,
    "fetch_push": FetchPushExpert,
    "fetch_pick_and_place": FetchPickAndPlaceExpert,
}
# Play policies: data that covers what the expert never does, for recording only (no task's is
# good to evaluate).
PLAY: dict[str, Callable[[PixelTaskEnv], Policy]] = {"pusher": PusherPlay}
POLICIES = ("random", "zero", "expert", "noisy_expert", "play")
EXPERT_BASED = ("expert", "noisy_expert")


def lacks_expert(name: str, task: str) -> bool:
    """Whether scripted policy `name` needs an expert (or play policy) that `task` has not."""
    return (name in EXPERT_BASED and task not in EXPERTS) or (name == "play" and task not in PLAY)


def make_policy(name: str, env: PixelTaskEnv, eps: float | None = None) -> Policy:
    """A scripted policy by name for the env's task; `eps` is noisy_expert's noise level."""
    task = env.preset.name
    if name not in POLICIES:
        raise ValueError(
            f"Unknown policy {name!r}. Known policies: {list(POLICIES)}, a mixture of them, package.module:attribute or sb3:ALGO:path.zip."
        )
    if name == "play":
        if task not in PLAY:
            raise ValueError(f"No play policy for task {task!r}; play policies exist for {sorted(PLAY)}.")
        return PLAY[task](env)
    if lacks_expert(name, task):
        raise ValueError(
            f"No expert for task {task!r}. Experts exist for {sorted(EXPERTS)}; record other tasks with policy=random or policy=zero."
        )
    if name == "random":
        return RandomPolicy(env)
    if name == "zero":
        return ZeroPolicy(env)
    if name == "expert":
        return EXPERTS[task](env)
    if eps is None:
        raise ValueError("noisy_expert needs eps in [0, 1], e.g. policy.eps=0.3.")
    return NoisyExpert(env, EXPERTS[task](env), eps)


def state_shape(env: PixelTaskEnv) -> tuple[int, ...]:
    """The shape of `info["state"]`: the source env's observation, flattened where it is a dict."""
    space = env.env.observation_space
    return gym.spaces.flatten_space(space).shape if isinstance(space, gym.spaces.Dict) else space.shape


def build_policy(name: str, env: PixelTaskEnv, eps: float | None = None) -> Policy:
    """A scripted policy by name, or one by reference checked against what the env gives: the
    source env's state vector for a state policy, the rendered frame for a pixel policy."""
    if not is_reference(name):
        return make_policy(name, env, eps)
    if eps is not None:
        raise ValueError(f"{name!r}: eps applies to noisy_expert only.")
    policy = load_policy(name)
    if isinstance(policy, SB3Policy):
        frame = env.observation_space.shape
        want = [frame, (frame[2], *frame[:2])] if policy.observes == "pixels" else [state_shape(env)]
        if policy.observation_shape not in want:
            raise ValueError(
                f"{name!r} was trained on {policy.observes} observations of shape {policy.observation_shape}, but "
                f"task {env.preset.name!r} gives {want[0]}: train it on this task's "
                f"{'frames (frame_size)' if policy.observes == 'pixels' else 'state'}."
            )
    return policy
