"""Pose maps: a simulator state drawn where the camera sees it, for the denoiser to read pixel by pixel.

The state track rolls [qpos, qvel] forward accurately for tens of steps, but a denoiser given that
state as a vector ignores it (teacher forcing makes the next pose easy to extrapolate from the
context frames) and a learned renderer of the vector draws a blob at CPU budgets (docs/studies.md). The
geometry needs no learning: forward kinematics places every body, the task's camera projects it
into the frame, and each body becomes one map channel — a soft line from its parent's origin to
its own (a link of the robot), or a soft point for a body hanging from the world (the target, an
object). Aligned with the frame being drawn, "draw the arm here" is a local copy a convolution
learns at once. The same model gives the state track its joint limits (`qpos_limits`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch
from einops import rearrange
from torch import Tensor


def task_camera(model: mujoco.MjModel, camera: dict[str, Any]) -> mujoco.MjvCamera:
    """The free (or body-tracking) camera a task preset describes: {"distance", "elevation",
    "azimuth", "lookat", "track_body"} (`envs.mujoco.tasks.Camera`)."""
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    if camera.get("track_body") is not None:
        cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        cam.trackbodyid = model.body(camera["track_body"]).id
    cam.distance = camera["distance"]
    cam.elevation = camera["elevation"]
    cam.azimuth = camera["azimuth"]
    cam.lookat[:] = camera.get("lookat", (0.0, 0.0, 0.0))
    return cam


def task_model(task: dict[str, Any]) -> mujoco.MjModel:
    """The MuJoCo model of a task preset's env, as recording built it: from the preset's
    `model_file` (package, path) where it names one, never importing the package or envs; else by
    making the env (`env_id`, `env_kwargs`)."""
    if task.get("model_file"):
        package, path = task["model_file"]
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModuleNotFoundError(f"Task {task.get('name')!r}: its MuJoCo model is in package {package!r}, which is not installed.")
        return mujoco.MjModel.from_xml_path(str(Path(found.submodule_search_locations[0]) / path))
    import gymnasium as gym

    env = gym.make(task["env_id"], **task.get("env_kwargs", {}))
    try:
        return env.unwrapped.model
    finally:
        env.close()


def qpos_limits(model: mujoco.MjModel, seen_low: Sequence[float], seen_high: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(nq,) bounds of qpos: the range of each limited hinge or slide joint, widened to what the
    data shows (MuJoCo's limits are soft: a hard push overshoots them); -inf/inf elsewhere (free,
    ball and unlimited joints)."""
    low, high = np.full(model.nq, -np.inf), np.full(model.nq, np.inf)
    for j in range(model.njnt):
        if model.jnt_limited[j] and int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
            a = model.jnt_qposadr[j]
            low[a], high[a] = min(model.jnt_range[j, 0], seen_low[a]), max(model.jnt_range[j, 1], seen_high[a])
    return low, high


class PoseProjector:
    """Projects states of one MuJoCo model into pixel coordinates of a task camera's frames.

    bodies: the bodies drawn, one map channel each (default: every body but the world). A body
    whose parent is not the world is drawn as the segment from its parent's origin to its own (the
    link between two joints), others as a point at their origin.
    """

    def __init__(self, model: mujoco.MjModel, camera: dict[str, Any], frame_size: Sequence[int], bodies: Sequence[str] | None = None):
        self.model, self.frame_size = model, (int(frame_size[0]), int(frame_size[1]))
        names = [model.body(i).name for i in range(1, model.nbody)] if bodies is None else list(bodies)
        unknown = [n for n in names if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) < 0]
        if unknown:
            raise ValueError(
                f"pose bodies {unknown} are not in the task's model; it has {[model.body(i).name for i in range(model.nbody)]}."
            )
        self.bodies = names
        self._ids = np.array([model.body(n).id for n in names])
        parents = model.body_parentid[self._ids]
        self._starts = np.where(parents == 0, self._ids, parents)  # world children: a segment of length 0
        self._camera = task_camera(model, camera)
        self._data = mujoco.MjData(model)
        self._scene = mujoco.MjvScene(model, maxgeom=0)
        self._tracking = self._camera.type == mujoco.mjtCamera.mjCAMERA_TRACKING
        self._eye: mujoco.MjvGLCamera | None = None

    @classmethod
    def from_task(cls, task: dict[str, Any], frame_size: Sequence[int], bodies: Sequence[str] | None = None) -> PoseProjector:
        return cls(task_model(task), task["camera"], frame_size, bodies)

    @property
    def channels(self) -> int:
        return len(self.bodies)

    def segments(self, qpos: np.ndarray) -> np.ndarray:
        """qpos (N, nq) -> (N, P, 2, 2): per body, its segment's start and end as (x, y) pixel
        coordinates of the frame (x right, y down, pixel i's centre at i + 0.5)."""
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.ndim != 2 or qpos.shape[1] != self.model.nq:
            raise ValueError(f"qpos must be (N, {self.model.nq}) for this task's model, got {qpos.shape}.")
        out = np.empty((len(qpos), self.channels, 2, 2))
        for i, q in enumerate(qpos):
            self._data.qpos[:] = q
            mujoco.mj_kinematics(self.model, self._data)
            if self._tracking:
                mujoco.mj_comPos(self.model, self._data)  # a tracking camera looks at the body's subtree centre of mass
                self._eye = None
            points = np.stack([self._data.xpos[self._starts], self._data.xpos[self._ids]], axis=1)  # (P, 2, 3)
            out[i] = self._project(points)
        return out

    def _project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 2) pixels, through the mono camera MuJoCo renders with
        (placed for the state in `_data`; a fixed camera is placed once)."""
        if self._eye is None:
            mujoco.mjv_updateCamera(self.model, self._data, self._camera, self._scene)
            self._eye = mujoco.mjv_averageCamera(self._scene.camera[0], self._scene.camera[1])
        eye = self._eye
        forward, up = np.asarray(eye.forward), np.asarray(eye.up)
        relative = points - np.asarray(eye.pos)
        depth = relative @ forward
        x, y = relative @ np.cross(forward, up) / depth, relative @ up / depth  # on the plane at distance 1
        h, w = self.frame_size
        half_height = (eye.frustum_top - eye.frustum_bottom) / 2 / eye.frustum_near
        centre_y = (eye.frustum_top + eye.frustum_bottom) / 2 / eye.frustum_near
        half_width = half_height * w / h  # frustum_width 0: the renderer takes the viewport's aspect
        return np.stack(
            [
                (x - eye.frustum_center / eye.frustum_near + half_width) / (2 * half_width) * w,
                (half_height + centre_y - y) / (2 * half_height) * h,
            ],
            axis=-1,
        )


def draw_segments(segments: Tensor, size: Sequence[int], sigma: float) -> Tensor:
    """segments (N, P, 2, 2) pixel (x, y) start/end -> (N, P, H, W) maps in [0, 1]: a Gaussian of
    each pixel centre's distance to its segment, sigma in pixels."""
    h, w = size
    # x along rows and y down columns, broadcast to (H, W) only where they meet: a few passes over
    # the maps instead of a dozen over (N, P, H*W, 2) pairs (3.6x faster for one world, 4.4x for 8)
    xs = torch.arange(w, device=segments.device, dtype=segments.dtype) + 0.5
    ys = (torch.arange(h, device=segments.device, dtype=segments.dtype) + 0.5)[:, None]
    (x0, y0), (x1, y1) = (rearrange(segments[:, :, i], "n p c -> c n p 1 1") for i in (0, 1))
    dx, dy = x1 - x0, y1 - y0
    rx, ry = xs - x0, ys - y0  # (N, P, 1, W), (N, P, H, 1): each pixel centre from the start
    along = ((rx * dx + ry * dy) / (dx * dx + dy * dy).clamp_min(1e-9)).clamp_(0, 1)  # the nearest point's place on the segment
    distance2 = (rx - along * dx).square_() + (ry - along * dy).square_()
    return torch.exp(distance2.div_(-2 * sigma**2))


class PoseMaps:
    """qpos -> pose maps of a model's frames. spec: {"bodies": [...], "sigma": pixels} (`ModelSpec.pose`).

    __call__(qpos: (..., nq) tensor) -> (..., P, H, W) float32 maps in [0, 1] on qpos's device.
    """

    def __init__(self, projector: PoseProjector, sigma: float):
        self.projector, self.sigma = projector, float(sigma)

    def __deepcopy__(self, memo) -> PoseMaps:
        return self  # geometry, no weights: a model's EMA copy draws with the same projector

    @classmethod
    def from_spec(cls, task: dict[str, Any], frame_shape: Sequence[int], pose: dict[str, Any]) -> PoseMaps:
        return cls(PoseProjector.from_task(task, frame_shape[:2], pose.get("bodies")), pose["sigma"])

    @property
    def channels(self) -> int:
        return self.projector.channels

    def segments(self, qpos: Tensor) -> Tensor:
        """qpos (..., nq) -> (..., P, 2, 2) float32 pixel segments (`PoseProjector.segments`) on
        qpos's device. MuJoCo places the bodies on the host: a GPU tensor is copied (a sync), so
        training computes these in its data loader (`with_segments`)."""
        lead = qpos.shape[:-1]
        segments = self.projector.segments(qpos.detach().reshape(-1, qpos.shape[-1]).cpu().double().numpy())
        return torch.from_numpy(segments).float().reshape(*lead, *segments.shape[1:]).to(qpos.device)

    def draw(self, segments: Tensor) -> Tensor:
        """segments (..., P, 2, 2) -> (..., P, H, W) float32 maps in [0, 1], on segments' device."""
        lead = segments.shape[:-3]
        maps = draw_segments(segments.reshape(-1, *segments.shape[-3:]), self.projector.frame_size, self.sigma)
        return maps.reshape(*lead, *maps.shape[1:])

    def __call__(self, qpos: Tensor) -> Tensor:
        return self.draw(self.segments(qpos))

    def with_segments(self, collate: Callable[[list], dict[str, Tensor]]) -> Callable[[list], dict[str, Tensor]]:
        """A DataLoader collate function that adds each window's "segments" (B, T, P, 2, 2) from its
        "qpos", on the loader's side (its worker processes, if any) rather than the training step's."""
        return partial(_collate_segments, collate, self)


def _collate_segments(collate: Callable[[list], dict[str, Tensor]], pose_maps: PoseMaps, items: list) -> dict[str, Tensor]:
    batch = collate(items)
    batch["segments"] = pose_maps.segments(batch["qpos"])  # host tensors: no copy
    return batch
