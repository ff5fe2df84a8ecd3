"""DiffusionWorld-v0: a trained world model as a Gymnasium environment, single or natively vectorised.

Observations (`observation=`): "pixels", the imagined frame (H, W, 3) uint8 (the default); "state",
the source task's own observation computed from the imagined simulator state by that env's own
code (`envs.mujoco.observations`), in its own observation space, so a policy trained on the real
env runs unchanged; "both", a Dict of the two. The action space is the source task's. Rewards
and termination come from the model's reward/termination head; episodes truncate after
`max_episode_steps` (default: the episode length of the recorded task, from the checkpoint). The
sliding window of frames and actions lives in `worldmodel.world_model`; the envs here hold one
window per world and step it.

Out-of-bounds actions are clipped to the action space, as MuJoCo clips controls to its ctrlrange;
NaN/inf or a wrong shape raise ValueError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array
from torch import Tensor

from worldmodel.world_model import Step, Window, WorldModel

CHECKPOINT_ENV_VAR = "DIFFUSION_WORLD_CHECKPOINT"
PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained" / "reacher.pt"  # shipped with the project
TERMINATION_THRESHOLD = 0.5
# Frames per second for videos of imagined episodes: a viewing rate, not the simulator's clock.
RENDER_FPS = 20


def load_world_model(
    checkpoint: str | os.PathLike | None,
    device: str = "cpu",
    bf16: bool | None = None,
    sampler_steps: int | None = None,
    sampler_method: str | None = None,
    context_sigma: float | None = None,
    compile: bool = False,
) -> WorldModel:
    """The env's model: `checkpoint`, else the path in $DIFFUSION_WORLD_CHECKPOINT."""
    checkpoint = checkpoint or os.environ.get(CHECKPOINT_ENV_VAR)
    if not checkpoint:
        raise ValueError(
            f"DiffusionWorld-v0 needs a trained model: pass checkpoint=PATH or set ${CHECKPOINT_ENV_VAR}. The project ships one "
            f"for reacher: checkpoint='{PRETRAINED}'. Train your own with: python tools/record_rollouts.py task=reacher "
            "policy=mixture episodes=240 out=data/reacher_mix.h5 && python tools/train.py data=data/reacher_mix.h5 run_dir=runs/reacher"
        )
    overrides = {"steps": sampler_steps, "method": sampler_method, "context_sigma": context_sigma}
    return WorldModel.load(checkpoint, device=device, bf16=bf16, compile=compile, **{k: v for k, v in overrides.items() if v is not None})


def action_space(model: WorldModel) -> spaces.Box:
    """One world's action space, the source task's, from the checkpoint."""
    low, high = (np.asarray(model.action_space[k], np.float32) for k in ("low", "high"))
    return spaces.Box(low, high, dtype=np.float32)


OBSERVATIONS = ("pixels", "state", "both")


class Observation:
    """What an env shows of its worlds (`kind`, one of OBSERVATIONS) and its single-world `space`.

    "state" and "both" compute the source task's observation from each world's imagined state with
    a `StateObserver`; a goal-based task (Fetch) also needs each world's goal (`goals`), which comes
    with its start context: reset options["goal"], else the checkpoint's start bank.
    """

    def __init__(self, model: WorldModel, kind: str):
        if kind not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {kind!r}.")
        if kind != "pixels" and model.state_shape is None:
            raise ValueError(
                f"observation={kind!r} computes the task's observation from the imagined simulator state, and this "
                "model imagines none (it has no state track). Train one with the state track: record data with "
                "states (tools/record_rollouts.py does) and train with dynamics=state_mlp (the default)."
            )
        from envs.mujoco.observations import observer_for

        self.kind, self.model = kind, model
        self.observer = None if kind == "pixels" else observer_for(model.spec.task)
        frame = spaces.Box(0, 255, model.frame_shape, np.uint8)
        if kind == "pixels":
            self.space = frame
        elif kind == "state":
            self.space = self.observer.observation_space
        else:
            self.space = spaces.Dict({"pixels": frame, "state": self.observer.observation_space})

    def goals(
        self, options: dict[str, Any] | None, batch_shape: tuple[int, ...], rows: Sequence[int], bank_rows: Sequence[int | None]
    ) -> np.ndarray | None:
        """(len(rows), G) goals of the worlds `rows` being reset (None where the task has no goal):
        options["goal"] ((*batch_shape, G), one per world), else each one's start bank row's
        (`bank_rows`, aligned with `rows`)."""
        shape = None if self.observer is None else self.observer.goal_shape
        if shape is None:
            return None
        if options and "goal" in options:
            goal = real_numbers(options["goal"], "goal").astype(np.float64)
            if goal.shape != (*batch_shape, *shape):
                raise ValueError(f"goal must have shape {(*batch_shape, *shape)}: the desired_goal of each world, got {goal.shape}.")
            return goal.reshape(-1, *shape)[list(rows)]
        if all(row is not None for row in bank_rows) and "goals" in self.model.start_bank:
            return self.model.start_bank["goals"][list(bank_rows)].numpy().astype(np.float64)
        raise ValueError(
            f"{self.observer.shadow.preset.env_id} keeps its goal outside the simulator state, and this start has "
            "none: pass reset(options={..., 'goal': desired_goal}) (the episode's goal, shape "
            f"{shape}), or use a checkpoint whose start bank holds goals (data recorded with them)."
        )

    def __call__(self, frames: Tensor, states: Tensor | None, goals: np.ndarray | None) -> list[Any]:
        """frames (B, H, W, 3) uint8, states (B, nq+nv), goals (B, G) or None -> B observations."""
        if self.observer is None:
            return list(frames_of(frames))
        obs = [self.observer.observe(s, None if goals is None else goals[i]) for i, s in enumerate(states.cpu().double().numpy())]
        return obs if self.kind == "state" else [{"pixels": f, "state": o} for f, o in zip(frames_of(frames), obs)]

    def close(self) -> None:
        if self.observer is not None:
            self.observer.close()


def open_world(metadata: dict[str, Any], render_mode: str | None, max_episode_steps: int | None, *load_args: Any) -> tuple[WorldModel, int]:
    """What both envs start from: checks render_mode against the env's metadata, loads the model
    (`load_world_model(*load_args)`) and resolves the step limit (default: the episode length the
    model's data was recorded with)."""
    if render_mode not in (None, *metadata["render_modes"]):
        raise ValueError(f"render_mode must be one of {metadata['render_modes']} or None, got {render_mode!r}.")
    model = load_world_model(*load_args)
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}.")
    return model, max_episode_steps or model.spec.episode_steps


def clean_actions(actions: Any, space: spaces.Space, batch_shape: tuple[int, ...]) -> np.ndarray:
    """actions (*batch_shape, *action_shape) -> a float32 array clipped to the box; ValueError for a
    wrong shape or NaN/inf."""
    arr = real_numbers(actions, "Action")
    want = (*batch_shape, *space.shape)
    if arr.shape != want:
        raise ValueError(f"Action must have shape {want}, got {arr.shape}: one action of shape {space.shape} per world.")
    return np.clip(arr, space.low, space.high).astype(np.float32)


def real_numbers(value: Any, name: str) -> np.ndarray:
    """`value` as a finite int or float array; a ValueError naming `name` for text, bools, complex
    numbers, NaN or inf."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers (int or float), got dtype {arr.dtype}: {value!r:.80}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf.")
    return arr


def context_from_options(model: WorldModel, options: dict[str, Any], batch_shape: tuple[int, ...]) -> Window:
    """A start window from options["context_frames"] (*batch, K, H, W, 3) uint8 and
    options["context_actions"] (*batch, K-1, *A), e.g. the real env's first K frames, and for a
    model with a state track options["context_states"] (*batch, K, nq+nv), their [qpos, qvel]."""
    k, frame_shape = model.context, model.frame_shape
    if "context_frames" not in options:
        raise ValueError(f"options has {sorted(options)}; a start context needs 'context_frames' and 'context_actions'.")
    frames = np.asarray(options["context_frames"])
    if frames.dtype != np.uint8:
        raise ValueError(f"context_frames must be uint8 (0-255, as rendered), got {frames.dtype}.")
    if frames.shape != (*batch_shape, k, *frame_shape):
        raise ValueError(
            f"context_frames must have shape {(*batch_shape, k, *frame_shape)}: the last {k} frames (this model's "
            f"context length) of shape {frame_shape}; got {frames.shape}."
        )
    if "context_actions" not in options:
        raise ValueError(f"options needs 'context_actions': the {k - 1} actions between the {k} context frames.")
    actions = real_numbers(options["context_actions"], "context_actions").astype(np.float32)
    want = (*batch_shape, k - 1, *model.action_shape)
    if actions.shape != want:
        raise ValueError(
            f"context_actions must have shape {want}: the {k - 1} actions between the {k} context frames; got {actions.shape}."
        )
    states = None
    if model.state_shape is not None:
        if "context_states" not in options:
            raise ValueError(
                f"options needs 'context_states': this model draws frames from the simulator state, the [qpos, qvel] "
                f"({model.state_shape[0]} numbers) of each of the {k} context frames."
            )
        states = torch.from_numpy(real_numbers(options["context_states"], "context_states").astype(np.float32))
    frames, actions = torch.from_numpy(frames), torch.from_numpy(actions)
    if not batch_shape:
        frames, actions, states = frames[None], actions[None], None if states is None else states[None]
    return model.window(frames, actions, states)


def given_context(model: WorldModel, options: dict[str, Any] | None, batch_shape: tuple[int, ...]) -> Window | None:
    """The start window in reset options, if any (every key but reset_mask and goal is about it)."""
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(
            f"options must be a dict (e.g. {{'context_frames': ..., 'context_actions': ...}}), got {type(options).__name__} {options!r:.40}."
        )
    if not options or not set(options) - {"reset_mask", "goal"}:
        return None
    return context_from_options(model, options, batch_shape)


def start_window(
    model: WorldModel, rng: np.random.Generator, generator: torch.Generator, given: Window | None
) -> tuple[Window, int | None]:
    """One world's start: `given`, or a context drawn from the checkpoint's bank by `rng` (and its
    bank row); then reseeds the world's sampling noise from `rng`, so a seeded reset fixes the whole
    episode."""
    row = None
    if given is None:
        row = int(rng.integers(len(model.start_bank["frames"]), size=1)[0])
        given = model.window(*model.bank_start([row]))
    generator.manual_seed(int(rng.integers(2**62)))
    return given, row


class DiffusionWorldEnv(gym.Env):
    """One imagined world. See the module docstring; arguments:

    checkpoint: model.pt from tools/train.py (default: $DIFFUSION_WORLD_CHECKPOINT);
    sampler_steps, sampler_method, context_sigma: override the checkpoint's sampler;
    device: "cpu", "cuda", "auto"; bf16: autocast (default: where the hardware computes bf16, `worldmodel.compiling.default_bf16`);
    compile: torch.compile the denoiser (for GPUs; no gain measured on CPU: `tools/bench.py`);
    render_mode: "rgb_array"; render_scale: integer upscaling of rendered frames for viewing;
    max_episode_steps: truncation (default: the recorded task's episode length, from the checkpoint);
    observation: "pixels" (default), "state" or "both" (module docstring).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS}

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        sampler_steps: int | None = None,
        sampler_method: str | None = None,
        context_sigma: float | None = None,
        device: str = "cpu",
        bf16: bool | None = None,
        render_mode: str | None = None,
        render_scale: int = 1,
        max_episode_steps: int | None = None,
        compile: bool = False,
        observation: str = "pixels",
    ):
        self.model, self.max_episode_steps = open_world(
            self.metadata, render_mode, max_episode_steps, checkpoint, device, bf16, sampler_steps, sampler_method, context_sigma, compile
        )
        self._observe = Observation(self.model, observation)
        self.observation_space, self.action_space = self._observe.space, action_space(self.model)
        self.render_mode, self.render_scale = render_mode, int(render_scale)
        self._generator = torch.Generator(self.model.device)  # the noise is drawn where the model runs
        self._window: Window | None = None
        self._goal: np.ndarray | None = None  # (1, G): a goal-based task's goal for this episode
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        window, row = start_window(self.model, self.np_random, self._generator, given_context(self.model, options, ()))
        self._goal = self._observe.goals(options, (), [0], [row])
        self._window, self._steps = window, 0
        return self._observation(), {"step": 0} | window_state(window, 0)

    def step(self, action):
        if self._window is None:
            raise RuntimeError("Call reset() before step().")
        action = clean_actions(action, self.action_space, ())
        self._window, out = self.model.step(self._window, torch.from_numpy(action)[None], self._generator)
        self._steps += 1
        prob = float(out.termination_prob[0])
        info = {"step": self._steps, "termination_prob": prob} | state_info(out, 0)
        return self._observation(), float(out.reward[0]), prob > TERMINATION_THRESHOLD, self._steps >= self.max_episode_steps, info

    def _observation(self) -> Any:
        return self._observe(self._window.last_frame, last_state(self._window), self._goal)[0]

    @property
    def shadow(self):
        """With a state observation, a `PixelTaskEnv` of the task put in the imagined state each time
        the env observes (reset, step): build a privileged scripted policy on it
        (`envs.mujoco.policies.build_policy(name, env.shadow)`) and it acts on the imagined world. None
        for observation="pixels"."""
        return None if self._observe.observer is None else self._observe.observer.shadow

    def render(self) -> np.ndarray | None:
        """rgb_array: the current frame, (H * render_scale, W * render_scale, 3) uint8."""
        if self.render_mode is None or self._window is None:
            return None
        return upscale(frames_of(self._window.last_frame)[0], self.render_scale)

    def close(self):
        self._observe.close()


def frames_of(frames: Tensor) -> np.ndarray:
    """(B, H, W, 3) uint8 frames as a numpy copy: the window's rows are the env's to change."""
    return frames.cpu().numpy().copy()


def last_state(window: Window) -> Tensor | None:
    """(B, nq+nv): each world's state now (None without a state track)."""
    return None if window.states is None else window.states[:, -1]


def window_state(window: Window, row: int) -> dict[str, Any]:
    """A reset's info: "state", the [qpos, qvel] (nq+nv,) float32 the world starts from (a model with
    a state track)."""
    return {} if window.states is None else {"state": window.states[row, -1].cpu().numpy()}


def state_info(out: Step, row: int) -> dict[str, Any]:
    """What the model imagines of one world beyond frame and reward: "state", (nq+nv,) float32
    [qpos, qvel] (a model with a state track), and "success_prob" and "success" (a model with a
    success head: the task's success test after the step, as `PixelTaskEnv` reports it)."""
    info: dict[str, Any] = {}
    if out.state is not None:
        info["state"] = out.state[row].cpu().numpy()
    if out.success_prob is not None:
        prob = float(out.success_prob[row])
        info |= {"success_prob": prob, "success": prob > 0.5}
    return info


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, 3) frames, sharp pixels for viewing."""
    return frame if scale == 1 else frame.repeat(scale, axis=-3).repeat(scale, axis=-2)


class DiffusionWorldVectorEnv(VectorEnv):
    """N imagined worlds stepped in one batched forward pass (`gym.make_vec("DiffusionWorld-v0", num_envs=N)`).

    Same arguments as DiffusionWorldEnv, plus num_envs. Autoreset is NEXT_STEP: the step after a
    world's episode ends returns its reset observation (reward 0) and ignores its action.
    reset(seed=s) seeds world i with s + i, so world i matches a single env reset with seed s + i
    (exactly in fp32). reset(options={"reset_mask": mask}) resets only the masked worlds; a start
    context in options is (N, K, H, W, 3) frames and (N, K-1, *A) actions, the masked rows used.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        checkpoint: str | os.PathLike | None = None,
        sampler_steps: int | None = None,
        sampler_method: str | None = None,
        context_sigma: float | None = None,
        device: str = "cpu",
        bf16: bool | None = None,
        render_mode: str | None = None,
        render_scale: int = 1,
        max_episode_steps: int | None = None,
        compile: bool = False,
        observation: str = "pixels",
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        self.model, self.max_episode_steps = open_world(
            self.metadata, render_mode, max_episode_steps, checkpoint, device, bf16, sampler_steps, sampler_method, context_sigma, compile
        )
        self.num_envs = num_envs
        self._observe = Observation(self.model, observation)
        self.single_observation_space, self.single_action_space = self._observe.space, action_space(self.model)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode, self.render_scale = render_mode, int(render_scale)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._generators = [torch.Generator(self.model.device) for _ in range(num_envs)]  # noise drawn where the model runs
        self._window: Window | None = None
        self._goals: np.ndarray | None = None  # (N, G): a goal-based task's goal of each world's episode
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        mask = np.ones(self.num_envs, bool) if not options or "reset_mask" not in options else np.asarray(options["reset_mask"])
        if mask.shape != (self.num_envs,) or mask.dtype != bool:
            raise ValueError(f"reset_mask must be a bool array of shape ({self.num_envs},), got {mask.shape} {mask.dtype}.")
        if self._window is None and not mask.all():
            raise ValueError("The first reset must reset every world (reset_mask all True).")
        self._reset_rows(np.flatnonzero(mask), self._seeds(seed), given_context(self.model, options, (self.num_envs,)), options)
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(mask):
            infos = self._add_info(infos, {"step": 0} | window_state(self._window, i), i)
        return self._observations(), infos

    def _reset_rows(
        self, rows: np.ndarray, seeds: Sequence[int | None], given: Window | None, options: dict[str, Any] | None = None
    ) -> None:
        bank_rows = []
        for i in rows:
            if seeds[i] is not None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
            window, bank_row = start_window(self.model, self._rngs[i], self._generators[i], None if given is None else given[[i]])
            bank_rows.append(bank_row)
            if self._window is None:  # first reset: allocate every row
                self._window = window.repeat(self.num_envs)
            self._window[[i]] = window
        goals = self._observe.goals(options, (self.num_envs,), rows, bank_rows) if len(rows) else None
        if goals is not None:
            if self._goals is None:
                self._goals = np.zeros((self.num_envs, *goals.shape[1:]))
            self._goals[rows] = goals
        self._steps[rows] = 0
        self._autoreset[rows] = False

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"Give one seed per world: {self.num_envs} seeds, got {len(seed)}.")
        return list(seed)

    def step(self, actions):
        if self._window is None:
            raise RuntimeError("Call reset() before step().")
        actions = clean_actions(actions, self.single_action_space, (self.num_envs,))
        rewards = np.zeros(self.num_envs, np.float64)
        terminated = np.zeros(self.num_envs, bool)
        probs = np.zeros(self.num_envs, np.float32)
        infos: dict[str, Any] = {}
        live, resetting = np.flatnonzero(~self._autoreset), np.flatnonzero(self._autoreset)
        if live.size:
            # Every row is stepped, the resetting ones too (their outputs are dropped and their generators reseeded by the
            # reset below): the batch keeps one shape, so compiled graphs and oneDNN's kernels are built once, not per size.
            self._window, out = self.model.step(self._window, torch.from_numpy(actions), self._generators)
            self._steps[live] += 1
            rewards[live] = out.reward.cpu().numpy()[live]
            probs[live] = out.termination_prob.cpu().numpy()[live]
            terminated[live] = probs[live] > TERMINATION_THRESHOLD
            for i in live:
                infos = self._add_info(infos, {"step": int(self._steps[i]), "termination_prob": float(probs[i])} | state_info(out, i), i)
        self._reset_rows(resetting, [None] * self.num_envs, None)
        for i in resetting:
            infos = self._add_info(infos, {"step": 0} | window_state(self._window, i), i)
        truncated = self._steps >= self.max_episode_steps  # 0 for worlds that just reset
        self._autoreset = terminated | truncated
        return self._observations(), rewards, terminated, truncated, infos

    def _observations(self) -> Any:
        """Every world's observation, batched as `observation_space` says."""
        observations = self._observe(self._window.last_frame, last_state(self._window), self._goals)
        return concatenate(self.single_observation_space, observations, create_empty_array(self.single_observation_space, self.num_envs))

    def render(self) -> tuple[np.ndarray, ...] | None:
        """rgb_array: each world's current frame, upscaled by render_scale."""
        if self.render_mode is None or self._window is None:
            return None
        return tuple(upscale(frame, self.render_scale) for frame in frames_of(self._window.last_frame))

    def close_extras(self, **kwargs):
        self._observe.close()
