"""Scripted experts for the Fetch arm's tasks (Gymnasium-Robotics' FetchPush, FetchPickAndPlace).

Fetch is driven in Cartesian space: an action moves the gripper by (dx, dy, dz) * 5 cm (the env's
mocap body drags it there through a weld) and sets the fingers (+1 open, -1 closed). The experts
read the block, the gripper site and the goal marker from the simulator and steer the gripper
with a proportional controller; their phase is re-decided from the state at every step.
"""

from __future__ import annotations

import numpy as np

from worldmodel.policy import Policy

ACTION_SCALE = 0.05  # m of gripper motion per unit of action (Fetch's _set_action)
BLOCK = 0.025  # m, the block's half-size


class FetchExpert(Policy):
    """What both Fetch experts read (the simulator of the env they are built for; obs and info go
    unused), and how they move the gripper to a point."""

    gain = 1.0  # 1: ask for the whole remaining error in one step (the weld lags behind it anyway)

    def __init__(self, env):
        self.env = env

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gripper (grip site), block and goal marker (3,) each, in m."""
        data = self.env.data
        return data.site("robot0:grip").xpos.copy(), data.body("object0").xpos.copy(), data.site("target0").xpos.copy()

    def move(self, grip: np.ndarray, target: np.ndarray, fingers: float) -> np.ndarray:
        """The action that takes the gripper from `grip` towards `target` (3,) with the fingers set."""
        motion = np.clip(self.gain * (target - grip) / ACTION_SCALE, -1.0, 1.0)
        return np.array([*motion, fingers], np.float32)


class FetchPushExpert(FetchExpert):
    """Pushes the block to the goal with the closed fingertips.

    `approach`: over the point 6 cm behind the block as seen from the goal, at a safe height (the
    gripper rises before it moves when it is low near the block), then down beside the table
    there. `push`: once behind the block on its line to the goal, the gripper drives through the
    block's centre along that line, which is re-aimed every step so a block that turns or slides
    sideways is steered back; the push eases off as the block reaches the goal.
    """

    name = "expert"
    behind = BLOCK + 0.035  # m from the block's centre to the fingertips before a push
    safe_height = 0.08  # m above the block's centre: the fingers clear it
    aligned = 0.012  # m, sideways error from the push line that still counts as behind it

    def act(self, obs, info):
        grip, block, goal = self.positions()
        to_goal = goal[:2] - block[:2]
        distance = np.linalg.norm(to_goal)
        direction = to_goal / max(distance, 1e-6)
        relative = grip[:2] - block[:2]
        along = relative @ direction  # < 0: behind the block
        across = np.linalg.norm(relative - along * direction)
        low = grip[2] < block[2] + 0.02
        if low and along < -BLOCK and across < self.aligned:
            # Push: the fingertips go to the block's far side as if it were already one step on.
            reach = min(distance, 0.03)
            target = np.array([*(block[:2] + direction * (reach - self.behind + 0.02)), block[2]])
            return self.move(grip, target, -1.0)
        behind = block[:2] - direction * self.behind
        if np.linalg.norm(grip[:2] - behind) < 0.01:
            return self.move(grip, np.array([*behind, block[2]]), -1.0)  # down beside the block
        if grip[2] < block[2] + self.safe_height - 0.02 and np.linalg.norm(relative) < 0.1:
            return self.move(grip, np.array([*grip[:2], block[2] + self.safe_height]), -1.0)  # up, clear of the block
        return self.move(grip, np.array([*behind, block[2] + self.safe_height]), -1.0)


class FetchPickAndPlaceExpert(FetchExpert):
    """Grasps the block and carries it to the goal, on the table or in the air.

    `reach`: open fingers over the block; `descend` around it; `grasp`: close until the fingers
    stop on the block; `carry` to the goal with the fingers closed. A block that slips out of the
    fingers is reached for again.
    """

    name = "expert"
    hover = 0.08  # m above the block while reaching over it
    over = 0.01  # m, horizontal error that counts as over the block
    grasped_width = 0.03  # m per finger: below it the fingers have closed (each stops at ~0.024 on the block)

    def act(self, obs, info):
        grip, block, goal = self.positions()
        fingers = (
            self.env.data.joint("robot0:r_gripper_finger_joint").qpos[0] + self.env.data.joint("robot0:l_gripper_finger_joint").qpos[0]
        )
        offset = block - grip
        held = np.linalg.norm(offset) < 0.02
        if held and fingers < 2 * self.grasped_width:
            # Carry: the block hangs at the grip site, so aim the site at the goal.
            return self.move(grip, goal, -1.0)
        if held:
            return self.move(grip, block, -1.0)  # grasp: stay and close
        if np.linalg.norm(offset[:2]) < self.over:
            return self.move(grip, block, 1.0)  # descend around the block, fingers open
        height = block[2] + self.hover
        if np.linalg.norm(offset[:2]) > 0.03:
            height = max(height, grip[2])  # on the way over, never lower: the fingers would sweep the block
        return self.move(grip, np.array([*block[:2], height]), 1.0)
