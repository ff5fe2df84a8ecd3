"""MuJoCo task presets for pixel world modelling, and the env that renders them.

A preset names a gymnasium MuJoCo env and fixes how it is seen and scored: camera (fixed, or
tracking a body), frame size, action repeat, episode length and an optional success test computed
from simulator state. A preset is plain data: `TaskPreset.describe()` round-trips through
`TaskPreset.from_dict`, so recorded files and checkpoints carry the whole task, and a new task is
one config file (configs/task/*.yaml) with no Python.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from mujoco import rollout

from worldmodel.pose import task_camera


@dataclass(frozen=True)
class Camera:
    """A MuJoCo camera at `distance` (m) and elevation/azimuth (deg) from its look-at point: `lookat`
    (m), or the moving body `track_body` (a robot that walks out of a fixed view)."""

    distance: float
    elevation: float
    azimuth: float
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.0)
    track_body: str | None = None


@dataclass(frozen=True)
class TaskPreset:
    """Everything that defines a pixel task; `get_task(name, **overrides)` makes variants.

    Success (optional: None where the task has no goal): `goal_body` within `success_distance` (m)
    of `success_target` (a body or a site), in the table plane (x, y) or, with `success_dims=3`, in
    space; checked after every step. Goal-conditioned planning compares `goal_body`'s position with
    where it is in the goal state.
    reward_decode: for tasks whose reward is -distance_weight * distance - control_weight * |a|^2
    (reacher), those weights: success in imagination is then judged from predicted rewards. A reward
    with more distances between bodies (pusher's fingertip to object) lists them as
    "extra_distances": [[body, body, weight], ...]; planners then read it from states by
    kinematics alone, and success is no longer recoverable from the reward.
    """

    name: str
    env_id: str
    camera: Camera
    episode_steps: int
    frame_size: tuple[int, int] = (64, 64)  # (H, W)
    action_repeat: int = 1
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    goal_body: str | None = None
    success_target: str | None = None
    success_distance: float | None = None
    success_dims: int = 2  # 2: distance in the table plane (x, y); 3: in space (a goal in the air)
    reward_decode: dict[str, Any] | None = None
    # Bodies whose table-plane positions measure a prediction in physical units (the position probe).
    key_bodies: tuple[str, ...] = ()
    # Bodies the pose maps draw by default (empty: every body): a robot's cameras, sensors and
    # cosmetic links add channels and nothing to learn.
    pose_bodies: tuple[str, ...] = ()
    # Shadows and reflections cost 4-20x render time under software EGL and add nothing to learn.
    shadows: bool = False
    # (package, path inside it) of the env's MuJoCo XML: the library loads the task's kinematics
    # (pose maps, joint limits) from it without making the env, so it never imports envs (Fetch's
    # env ids name envs.mujoco.robotics). None: the library makes the env for its model.
    model_file: tuple[str, str] | None = None

    @property
    def has_success(self) -> bool:
        return self.goal_body is not None and self.success_target is not None and self.success_distance is not None

    def distance(self, data: mujoco.MjData) -> float | None:
        """`goal_body` to `success_target` (m), in the table plane or in space (`success_dims`);
        None without a success test."""
        if not self.has_success:
            return None
        return float(np.linalg.norm(self.goal_position(data) - _position(data, self.success_target)[: self.success_dims]))

    def goal_position(self, data: mujoco.MjData) -> np.ndarray:
        """(success_dims,) position of `goal_body` (m): what the success test measures."""
        return data.body(self.goal_body).xpos[: self.success_dims].copy()

    def success_from_reward(self, reward: np.ndarray, action: np.ndarray) -> np.ndarray | None:
        """reward: (...,) of one step, action: (..., *A) taken in it -> (...,) bool, the task's success
        test on the distance the reward implies; None for tasks where it cannot be recovered."""
        decode = self.reward_decode
        if decode is None or decode.get("extra_distances") or not self.has_success or self.action_repeat != 1:  # repeats sum rewards
            return None
        ctrl = decode["control_weight"] * np.square(action).sum(-1)
        distance = -(np.asarray(reward) + ctrl) / decode["distance_weight"]
        return distance < self.success_distance

    def describe(self) -> dict[str, Any]:
        """Plain-type description, stored as metadata next to recorded data and in checkpoints."""
        d = dataclasses.asdict(self)
        d["frame_size"] = list(self.frame_size)
        d["camera"]["lookat"] = list(self.camera.lookat)
        d["key_bodies"] = list(self.key_bodies)
        d["pose_bodies"] = list(self.pose_bodies)
        d["model_file"] = None if self.model_file is None else list(self.model_file)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskPreset:
        """The preset a `describe()` dict (or a task config file) defines; checks what it can."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown task option(s) {sorted(unknown)}; a task has {sorted(known)}.")
        missing = {"name", "env_id", "camera", "episode_steps"} - {k for k, v in d.items() if v is not None}
        if missing:
            raise ValueError(
                f"Task {d.get('name')!r} needs {sorted(missing)} (a new task's config names its gymnasium env_id, "
                "camera and episode_steps; see configs/task/)."
            )
        d = {k: v for k, v in d.items() if v is not None}
        camera = d["camera"] if isinstance(d["camera"], Camera) else Camera(**d["camera"])
        preset = cls(
            **{
                **d,
                "camera": dataclasses.replace(camera, lookat=tuple(float(x) for x in camera.lookat)),
                "frame_size": tuple(int(s) for s in d.get("frame_size", (64, 64))),
                "key_bodies": tuple(d.get("key_bodies", ())),
                "pose_bodies": tuple(d.get("pose_bodies", ())),
                "model_file": None if d.get("model_file") is None else tuple(d["model_file"]),
                "env_kwargs": dict(d.get("env_kwargs", {})),
            }
        )
        h, w = preset.frame_size
        if min(h, w) < 8 or max(h, w) > 1024:
            raise ValueError(f"frame_size must be (H, W) between 8 and 1024 pixels, got {preset.frame_size}.")
        if preset.action_repeat < 1 or preset.episode_steps < 1:
            raise ValueError("action_repeat and episode_steps must be >= 1.")
        if preset.success_dims not in (2, 3):
            raise ValueError(f"success_dims must be 2 (table plane) or 3 (in space), got {preset.success_dims}.")
        success = (preset.goal_body, preset.success_target, preset.success_distance)
        if any(v is not None for v in success[1:]) and not all(v is not None for v in success):
            raise ValueError(f"Task {preset.name!r}: a success test needs goal_body, success_target and success_distance, got {success}.")
        return preset


# The Fetch arm's moving links, shoulder to gripper (the head, cameras and base add nothing).
FETCH_ARM = tuple(
    f"robot0:{link}_link"
    for link in ("shoulder_pan", "shoulder_lift", "upperarm_roll", "elbow_flex", "forearm_roll", "wrist_flex", "wrist_roll", "gripper")
)

# Gymnasium-Robotics' Fetch: a 7-DoF arm moved in Cartesian steps (envs/mujoco/robotics.py makes it
# under this mujoco). The dense reward (-distance of block to goal) gives planners a slope; success
# is the env's own test: the block within 5 cm of the goal marker, in space.
FETCH_TASK = dict(
    goal_body="object0",
    success_target="target0",
    success_distance=0.05,
    success_dims=3,
    reward_decode={"distance_weight": 1.0, "control_weight": 0.0},
    key_bodies=("object0", "robot0:gripper_link"),
    episode_steps=50,
)

TASKS: dict[str, TaskPreset] = {
    "reacher": TaskPreset(
        name="reacher",
        env_id="Reacher-v5",
        # Top-down over the 0.21 m arm's reach, +x right, +y up.
        camera=Camera(distance=0.6, elevation=-90.0, azimuth=90.0, lookat=(0.0, 0.0, 0.0)),
        goal_body="fingertip",
        success_target="target",
        success_distance=0.02,  # fingertip (r 0.01) touching the target (r 0.009)
        # Reacher-v5's reward: -reward_dist_weight * distance - reward_control_weight * |a|^2, both 1 by default.
        reward_decode={"distance_weight": 1.0, "control_weight": 1.0},
        key_bodies=("fingertip", "target"),
        episode_steps=50,
        model_file=("gymnasium", "envs/mujoco/assets/reacher.xml"),
    ),
    "pusher": TaskPreset(
        name="pusher",
        env_id="Pusher-v5",
        # Oblique view over the table from the far side: arm, object and goal all in frame.
        camera=Camera(distance=1.2, elevation=-60.0, azimuth=135.0, lookat=(0.35, -0.3, -0.3)),
        goal_body="object",
        success_target="goal",
        success_distance=0.08,  # object centre inside the red goal disc (r 0.08)
        # Pusher-v5's reward: -|object - goal| - 0.5 |fingertip - object| - 0.1 |a|^2, in space.
        reward_decode={"distance_weight": 1.0, "control_weight": 0.1, "extra_distances": [["tips_arm", "object", 0.5]]},
        key_bodies=("object", "tips_arm", "goal"),
        episode_steps=100,
        model_file=("gymnasium", "envs/mujoco/assets/pusher_v5.xml"),
    ),
    "fetch_push": TaskPreset(
        name="fetch_push",
        env_id="envs.mujoco.robotics:FetchPushDense-v4",
        # From the table's far corner, looking back at the arm: gripper, block and goal in view.
        camera=Camera(distance=0.9, elevation=-35.0, azimuth=120.0, lookat=(1.3, 0.75, 0.5)),
        pose_bodies=FETCH_ARM + ("object0",),
        model_file=("gymnasium_robotics", "envs/assets/fetch/push.xml"),
        **FETCH_TASK,
    ),
    "fetch_pick_and_place": TaskPreset(
        name="fetch_pick_and_place",
        env_id="envs.mujoco.robotics:FetchPickAndPlaceDense-v4",
        # Half the goals are up to 45 cm above the table: the view reaches higher.
        camera=Camera(distance=1.0, elevation=-30.0, azimuth=120.0, lookat=(1.3, 0.75, 0.55)),
        pose_bodies=FETCH_ARM + ("robot0:r_gripper_finger_link", "robot0:l_gripper_finger_link", "object0"),
        model_file=("gymnasium_robotics", "envs/assets/fetch/pick_and_place.xml"),
        **FETCH_TASK,
    ),
}


def _position(data: mujoco.MjData, name: str) -> np.ndarray:
    """(3,) world position of the body or, failing that, the site called `name`."""
    try:
        return data.body(name).xpos
    except KeyError:
        try:
            return data.site(name).xpos
        except KeyError:
            raise ValueError(f"{name!r} is neither a body nor a site of the task's model.") from None


def get_task(task: str | dict[str, Any], **overrides: Any) -> TaskPreset:
    """A task preset: a built-in one by name (TASKS) with `overrides` (None values keep the preset's
    own), or a whole definition (a dict: `TaskPreset.describe()` or a task config file) for any
    gymnasium MuJoCo env. A dict naming a built-in task without an env_id overrides that task."""
    if isinstance(task, dict):
        task, overrides = task.get("name"), {**task, **{k: v for k, v in overrides.items() if v is not None}}
        overrides.pop("name", None)
        if task not in TASKS or overrides.get("env_id") not in (None, TASKS[task].env_id):
            return TaskPreset.from_dict({"name": task, **overrides})
    if task not in TASKS:
        raise ValueError(
            f"Unknown task {task!r}. Built-in tasks: {sorted(TASKS)}; any other needs a full definition "
            "(env_id, camera, episode_steps: see configs/task/)."
        )
    base = TASKS[task].describe()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(overrides.get("camera"), Camera):
        overrides["camera"] = dataclasses.asdict(overrides["camera"])
    if isinstance(overrides.get("camera"), dict):
        overrides["camera"] = {**base["camera"], **{k: v for k, v in overrides["camera"].items() if v is not None}}
    return TaskPreset.from_dict({**base, **overrides})


class PixelTaskEnv(gym.Wrapper):
    """A MuJoCo task seen through the preset's camera.

    Observation: the rendered frame, `Box(0, 255, (H, W, 3), uint8)`. The source env's state
    observation (flattened where it is a dict, as goal-based envs give it: achieved_goal,
    desired_goal, observation), `qpos`, `qvel`, the success flag and the task distance go into `info`.
    A step repeats the action `action_repeat` times and sums the rewards; episodes truncate after
    `episode_steps` steps.
    """

    def __init__(self, preset: TaskPreset):
        env = gym.make(
            preset.env_id,
            max_episode_steps=preset.episode_steps * preset.action_repeat,
            **preset.env_kwargs,
        )
        super().__init__(env)
        self.preset = preset
        h, w = preset.frame_size
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
        model = env.unwrapped.model
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, w)
        model.vis.global_.offheight = max(model.vis.global_.offheight, h)
        self._renderer = mujoco.Renderer(model, h, w)
        self._camera = task_camera(model, dataclasses.asdict(preset.camera))
        # A mocap body is a controller's handle (Fetch's gripper target), not part of the scene, and
        # its position is not in qpos: drawn, it would make frames depend on more than the state.
        model.geom_rgba[model.body_mocapid[model.geom_bodyid] >= 0, 3] = 0.0
        self._frame: np.ndarray | None = None
        # rollout_states' workspaces, one per thread: the env's own data stays untouched
        self._rollout_data = [mujoco.MjData(model) for _ in range(min(os.cpu_count() or 1, 8))]
        for name in (preset.goal_body, *preset.key_bodies, *preset.pose_bodies):
            if name is not None and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) < 0:
                raise ValueError(
                    f"Task {preset.name!r} names body {name!r}, which {preset.env_id} does not have; its bodies: "
                    f"{[model.body(i).name for i in range(model.nbody)]}."
                )
        if preset.has_success:
            _position(self.data, preset.success_target)  # a clear error now rather than at the first step

    @property
    def data(self) -> mujoco.MjData:
        return self.env.unwrapped.data

    @property
    def task_name(self) -> str:
        return self.preset.name

    @property
    def episode_steps(self) -> int:
        return self.preset.episode_steps

    @property
    def success_distance(self) -> float | None:
        return self.preset.success_distance

    def distance(self) -> float | None:
        """The task's distance to success (m), from simulator state; None without a success test."""
        return self.preset.distance(self.data)

    def success(self) -> bool:
        distance = self.distance()
        return distance is not None and distance < self.preset.success_distance

    @property
    def goal_shape(self) -> tuple[int, ...] | None:
        """(G,): a goal-based env's goal (desired_goal, kept outside the simulator state); None for other envs."""
        space = self.env.observation_space
        return tuple(space["desired_goal"].shape) if isinstance(space, gym.spaces.Dict) and "desired_goal" in space.spaces else None

    def episode_goal(self) -> np.ndarray | None:
        """(G,) the current episode's goal of a goal-based env, else None."""
        return None if self.goal_shape is None else np.array(self.env.unwrapped.goal, np.float64)

    def goal_point(self) -> np.ndarray:
        """(success_dims,) position of the preset's goal body: what goal-conditioned success compares."""
        if self.preset.goal_body is None:
            raise ValueError(f"Task {self.preset.name!r} has no goal_body: goal-conditioned planning needs one.")
        return self.preset.goal_position(self.data)

    def key_positions(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Table-plane (x, y) positions (m) of the preset's key bodies at recorded states:
        qpos (N, nq), qvel (N, nv) -> (N, P, 2). Kinematics only, on scratch data: the env is untouched."""
        model = self.env.unwrapped.model
        scratch = mujoco.MjData(model)
        ids = [model.body(name).id for name in self.preset.key_bodies]
        out = np.empty((len(qpos), len(ids), 2))
        for i, (q, v) in enumerate(zip(qpos, qvel)):
            scratch.qpos[:], scratch.qvel[:] = q, v
            mujoco.mj_kinematics(model, scratch)
            out[i] = scratch.xpos[ids, :2]
        return out

    def get_state(self) -> np.ndarray:
        """The full physics state (positions, velocities, actuation, time), for `set_state`."""
        model = self.env.unwrapped.model
        state = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
        mujoco.mj_getState(model, self.data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        return state

    def rollout_states(self, actions: np.ndarray) -> np.ndarray:
        """actions (N, T, *A) -> (N, T, nq+nv) [qpos, qvel] after each step of each open-loop sequence,
        all from the current state, which is left as it was. Envs whose step is `ctrl = action`
        held for `frame_skip` substeps (gymnasium's MujocoEnv: reacher, pusher) run in MuJoCo's
        native batched rollout, in parallel threads; others (Fetch's mocap control) step the env."""
        env, model = self.env.unwrapped, self.env.unwrapped.model
        n, t = actions.shape[:2]
        if isinstance(env, MujocoEnv):
            repeat = env.frame_skip * self.preset.action_repeat
            control = np.repeat(actions.reshape(n, t, -1).astype(np.float64), repeat, axis=1)
            states, _ = rollout.rollout(model, self._rollout_data, self.get_state()[None], control)
            return states[:, repeat - 1 :: repeat, 1 : 1 + model.nq + model.nv]  # FULLPHYSICS: [time, qpos, qvel, ...]
        start, out = self.get_state(), np.empty((n, t, model.nq + model.nv))
        for i, sequence in enumerate(actions):
            self._restore(start)
            for j, a in enumerate(sequence):
                self.simulate(a)
                out[i, j] = np.concatenate([self.data.qpos, self.data.qvel])
        self._restore(start)
        return out

    def set_state(self, state: np.ndarray | None = None, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None) -> np.ndarray:
        """Restores a `get_state()` state, or sets qpos/qvel (e.g. a recorded dataset state); returns the new frame.
        The episode's step count is unchanged. The frame shows the bodies exactly at this state; a step's
        frame shows them where its last physics substep began, as gymnasium's own rendering does."""
        if state is not None:
            self._restore(state)
        else:
            # gymnasium's MujocoEnv has set_state; goal-based robot envs (Fetch) do not.
            model, data = self.env.unwrapped.model, self.data
            data.qpos[:], data.qvel[:] = qpos, qvel
            mujoco.mj_forward(model, data)
        return self._render_frame()

    def _restore(self, state: np.ndarray) -> None:
        mujoco.mj_setState(self.env.unwrapped.model, self.data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(self.env.unwrapped.model, self.data)

    def simulate(self, action: np.ndarray, render: bool = False) -> tuple[float, np.ndarray | None]:
        """One step of the raw simulator, outside the episode's bookkeeping (no step count, no info):
        for planners that use the simulator as their model. Returns (reward, frame if render)."""
        total = 0.0
        for _ in range(self.preset.action_repeat):
            total += float(self.env.unwrapped.step(action)[1])
        return total, self._render_frame() if render else None

    def _render_frame(self) -> np.ndarray:
        self._renderer.update_scene(self.data, camera=self._camera)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.preset.shadows
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.preset.shadows
        self._frame = self._renderer.render().copy()
        return self._frame

    def _info(self, state_obs: np.ndarray | dict, info: dict) -> dict:
        if isinstance(state_obs, dict):
            state_obs = gym.spaces.flatten(self.env.observation_space, state_obs)
        return {
            **info,
            "state": state_obs,
            "qpos": self.data.qpos.copy(),
            "qvel": self.data.qvel.copy(),
            "distance": self.distance(),
            "success": self.success(),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        state_obs, info = self.env.reset(seed=seed, options=options)
        # Goal-based robot envs move their goal marker (a model site) only when they render
        # themselves; ours renders through its own camera, so ask for the move here.
        move_goal_marker = getattr(self.env.unwrapped, "_render_callback", None)
        if move_goal_marker is not None:
            move_goal_marker()
        return self._render_frame(), self._info(state_obs, info)

    def step(self, action):
        total = 0.0
        for _ in range(self.preset.action_repeat):
            state_obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return self._render_frame(), total, bool(terminated), bool(truncated), self._info(state_obs, info)

    def render(self) -> np.ndarray:
        """The current frame, (H, W, 3) uint8."""
        return self._frame if self._frame is not None else self._render_frame()

    def close(self):
        self._renderer.close()
        super().close()


def make_task_env(task: str | TaskPreset, **overrides: Any) -> PixelTaskEnv:
    """The pixel env of a preset, e.g. `make_task_env("reacher", frame_size=(96, 96))`."""
    preset = task if isinstance(task, TaskPreset) else get_task(task, **overrides)
    return PixelTaskEnv(preset)
