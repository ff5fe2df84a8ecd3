"""MuJoCo task presets for pixel world modelling, and the env that renders them.

A preset names a gymnasium MuJoCo env and fixes how it is seen and scored: camera, frame size,
action repeat, episode length and a success test computed from simulator state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import mujoco
import numpy as np


@dataclass(frozen=True)
class Camera:
    """A free MuJoCo camera: looks at `lookat` (m) from `distance` (m) at elevation/azimuth (deg)."""

    distance: float
    elevation: float
    azimuth: float
    lookat: tuple[float, float, float]


def _reacher_distance(data: mujoco.MjData) -> float:
    """Fingertip-to-target distance in the table plane (m)."""
    return float(np.linalg.norm(data.body("fingertip").xpos[:2] - data.body("target").xpos[:2]))


def _pusher_distance(data: mujoco.MjData) -> float:
    """Object-to-goal distance in the table plane (m)."""
    return float(np.linalg.norm(data.body("object").xpos[:2] - data.body("goal").xpos[:2]))


def _reacher_distance_from_reward(reward: np.ndarray, action: np.ndarray, env_kwargs: dict) -> np.ndarray:
    """Reacher-v5's reward is -w_dist * |fingertip - target| - w_ctrl * |a|^2: the distance, back
    from a (predicted) reward and the action taken. reward: (...,), action: (..., 2) -> (...,) m."""
    ctrl = env_kwargs.get("reward_control_weight", 1.0) * np.square(action).sum(-1)
    return -(np.asarray(reward) + ctrl) / env_kwargs.get("reward_dist_weight", 1.0)


@dataclass(frozen=True)
class TaskPreset:
    """Everything that defines a pixel task; `get_task(name, **overrides)` makes variants."""

    name: str
    env_id: str
    camera: Camera
    # Success when `distance_fn(data) < success_distance`, checked after every step.
    distance_fn: Callable[[mujoco.MjData], float]
    success_distance: float
    episode_steps: int
    frame_size: tuple[int, int] = (64, 64)  # (H, W)
    action_repeat: int = 1
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # Shadows and reflections cost 4-20x render time under software EGL and add nothing to learn.
    shadows: bool = False
    # Goal-conditioned success: this body within success_distance (in the table plane) of where it is in the goal state.
    goal_body: str = "fingertip"
    # (reward, action, env_kwargs) -> the task distance, for tasks whose reward is a known function
    # of it: success in imagination, judged from predicted rewards. None where the reward mixes terms.
    distance_from_reward: Callable[[np.ndarray, np.ndarray, dict], np.ndarray] | None = None

    def success_from_reward(self, reward: np.ndarray, action: np.ndarray) -> np.ndarray | None:
        """reward: (...,) of one step, action: (..., *A) taken in it -> (...,) bool, the task's success
        test on the distance the reward implies; None for tasks where it cannot be recovered."""
        if self.distance_from_reward is None or self.action_repeat != 1:  # repeated steps sum several rewards
            return None
        return self.distance_from_reward(reward, action, self.env_kwargs) < self.success_distance

    def describe(self) -> dict[str, Any]:
        """Plain-type description, stored as metadata next to recorded data."""
        d = dataclasses.asdict(self)
        d.pop("distance_fn")
        d.pop("distance_from_reward")
        d["frame_size"] = list(self.frame_size)
        d["camera"]["lookat"] = list(self.camera.lookat)
        return d


TASKS: dict[str, TaskPreset] = {
    "reacher": TaskPreset(
        name="reacher",
        env_id="Reacher-v5",
        # Top-down over the 0.21 m arm's reach, +x right, +y up.
        camera=Camera(distance=0.6, elevation=-90.0, azimuth=90.0, lookat=(0.0, 0.0, 0.0)),
        distance_fn=_reacher_distance,
        distance_from_reward=_reacher_distance_from_reward,
        success_distance=0.02,  # fingertip (r 0.01) touching the target (r 0.009)
        episode_steps=50,
    ),
    "pusher": TaskPreset(
        name="pusher",
        env_id="Pusher-v5",
        # Oblique view over the table from the far side: arm, object and goal all in frame.
        camera=Camera(distance=1.2, elevation=-60.0, azimuth=135.0, lookat=(0.35, -0.3, -0.3)),
        distance_fn=_pusher_distance,
        goal_body="object",
        success_distance=0.08,  # object centre inside the red goal disc (r 0.08)
        episode_steps=100,
    ),
}


def get_task(name: str, **overrides: Any) -> TaskPreset:
    """The preset `name` with `overrides` (None values keep the preset's own)."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}. Known tasks: {sorted(TASKS)}.")
    preset = TASKS[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TaskPreset)}
    if unknown:
        raise ValueError(f"Unknown task option(s) {sorted(unknown)} for task {name!r}.")
    if "frame_size" in overrides:
        overrides["frame_size"] = tuple(int(s) for s in overrides["frame_size"])
    if "camera" in overrides and isinstance(overrides["camera"], dict):
        overrides["camera"] = Camera(**overrides["camera"])
    preset = dataclasses.replace(preset, **overrides)
    h, w = preset.frame_size
    if min(h, w) < 8 or max(h, w) > 1024:
        raise ValueError(f"frame_size must be (H, W) between 8 and 1024 pixels, got {preset.frame_size}.")
    if preset.action_repeat < 1 or preset.episode_steps < 1:
        raise ValueError("action_repeat and episode_steps must be >= 1.")
    return preset


class PixelTaskEnv(gym.Wrapper):
    """A MuJoCo task seen through the preset's camera.

    Observation: the rendered frame, `Box(0, 255, (H, W, 3), uint8)`. The source env's state
    observation, `qpos`, `qvel`, the success flag and the task distance go into `info`.
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
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.distance = preset.camera.distance
        self._camera.elevation = preset.camera.elevation
        self._camera.azimuth = preset.camera.azimuth
        self._camera.lookat[:] = preset.camera.lookat
        self._frame: np.ndarray | None = None

    @property
    def data(self) -> mujoco.MjData:
        return self.env.unwrapped.data

    def distance(self) -> float:
        """The task's distance to success (m), from simulator state."""
        return self.preset.distance_fn(self.data)

    def success(self) -> bool:
        return self.distance() < self.preset.success_distance

    def goal_point(self) -> np.ndarray:
        """(2,) table-plane position of the preset's goal body: what goal-conditioned success compares."""
        return self.data.body(self.preset.goal_body).xpos[:2].copy()

    def get_state(self) -> np.ndarray:
        """The full physics state (positions, velocities, actuation, time), for `set_state`."""
        model = self.env.unwrapped.model
        state = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
        mujoco.mj_getState(model, self.data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        return state

    def set_state(self, state: np.ndarray | None = None, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None) -> np.ndarray:
        """Restores a `get_state()` state, or sets qpos/qvel (e.g. a recorded dataset state); returns the new frame.
        The episode's step count is unchanged."""
        if state is not None:
            mujoco.mj_setState(self.env.unwrapped.model, self.data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
            mujoco.mj_forward(self.env.unwrapped.model, self.data)
        else:
            self.env.unwrapped.set_state(np.asarray(qpos), np.asarray(qvel))
        return self._render_frame()

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

    def _info(self, state_obs: np.ndarray, info: dict) -> dict:
        distance = self.distance()
        return {
            **info,
            "state": state_obs,
            "qpos": self.data.qpos.copy(),
            "qvel": self.data.qvel.copy(),
            "distance": distance,
            "success": distance < self.preset.success_distance,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        state_obs, info = self.env.reset(seed=seed, options=options)
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
