"""Imagination: the one place frames are generated.

`WorldModel.load(path)` rebuilds a trained model from its self-contained checkpoint;
`WorldModel.step(window, actions)` samples the next frame of a batch of worlds and slides their
`Window` (the last K frames, real or generated, and the actions between them) by one; environments
hold a window and step it. `WorldModel.imagine(...)` rolls out any horizon in one call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from worldmodel.checkpoint import CheckpointError, load_checkpoint
from worldmodel.compiling import compile_mode, convolutions_to_bf16, default_bf16
from worldmodel.denoising import Conditioner, next_frame_denoiser
from worldmodel.diffusion import Generators, SamplerConfig, randn, sample
from worldmodel.diffusion.samplers import Denoise
from worldmodel.frames import to_model, to_uint8
from worldmodel.models import build_dynamics, build_networks
from worldmodel.models.codec import FrameCodec
from worldmodel.pose import PoseMaps
from worldmodel.spec import ModelSpec


@dataclass
class Window:
    """What the next frame of B worlds is sampled from: the last K frames and the K-1 actions
    between them. frames: (B, K, H, W, 3) uint8; actions: (B, K-1, *A); states: (B, K, nq+nv)
    float32, the simulator state [qpos, qvel] of each frame (real or imagined) for a model with a
    state track, else None; latents: (B, K, C, h, w) float32, each frame's latent for a latent model
    (encoded once for real frames, as sampled for imagined ones), else None."""

    frames: Tensor
    actions: Tensor
    states: Tensor | None = None
    latents: Tensor | None = None

    def __len__(self) -> int:
        return self.frames.shape[0]

    def _fields(self) -> dict[str, Tensor | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __getitem__(self, rows) -> Window:
        return Window(**{k: None if v is None else v[rows] for k, v in self._fields().items()})

    def __setitem__(self, rows, other: Window) -> None:
        for k, v in self._fields().items():
            if v is not None:
                v[rows] = getattr(other, k)

    def repeat(self, n: int) -> Window:
        """Each world's rows repeated n times (a batch of n from one world)."""
        return Window(**{k: None if v is None else v.repeat_interleave(n, 0) for k, v in self._fields().items()})

    @property
    def last_frame(self) -> Tensor:
        """(B, H, W, 3) uint8: what the worlds show now."""
        return self.frames[:, -1]

    def slide(self, frame: Tensor, action: Tensor, state: Tensor | None = None, latent: Tensor | None = None) -> Window:
        """Appends frame (B, H, W, 3) (and its state (B, nq+nv), its latent (B, C, h, w)), reached by
        action (B, *A), and drops the oldest of each."""
        new = {"frames": frame, "actions": action, "states": state, "latents": latent}
        return Window(**{k: None if v is None else torch.cat([v, new[k][:, None]], dim=1)[:, 1:] for k, v in self._fields().items()})


@dataclass
class Step:
    """One imagined step of B worlds: frame (B, H, W, 3) uint8, reward (B,), termination_prob (B,),
    state (B, nq+nv) [qpos, qvel] (a model with a state track; else None), success_prob (B,) of the
    task's success test after the step (a model with a success head; else None)."""

    frame: Tensor
    reward: Tensor
    termination_prob: Tensor
    state: Tensor | None = None
    success_prob: Tensor | None = None


@dataclass
class Imagined:
    """frames: (B, N, H, W, 3) uint8; rewards: (B, N) float32; termination_prob: (B, N) in [0, 1];
    states: (B, N, nq+nv) (a model with a state track; else None); success_prob: (B, N) in [0, 1]
    (a model with a success head; else None)."""

    frames: Tensor
    rewards: Tensor
    termination_prob: Tensor
    states: Tensor | None = None
    success_prob: Tensor | None = None


@dataclass
class StepInputs:
    """One step's denoiser inputs for B worlds (`WorldModel.step_inputs`): actions (B, K, *A), the
    window's K-1 and the step's; context (B, K, C, h, w), the window as the denoiser sees it (frames
    in [-1, 1] or a latent model's latents) noised to `context_sigma`;
    target_noise (B, 1, C, h, w) unit Gaussian; conditioning, the denoiser's state and pose inputs;
    state (B, nq+nv), the state track's next state (None without one)."""

    actions: Tensor
    context: Tensor
    context_sigma: float
    target_noise: Tensor
    conditioning: dict[str, Tensor]
    state: Tensor | None


class WorldModel:
    """A trained world model, ready to imagine. Build with `WorldModel.load(path, device)`."""

    def __init__(
        self,
        denoiser: nn.Module,
        reward_head: nn.Module,
        spec: ModelSpec,
        sampler: SamplerConfig | None = None,
        start_bank: dict[str, Tensor] | None = None,
        provenance: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        bf16: bool = False,
        compile: bool = False,
        dynamics: nn.Module | None = None,
        pose_maps: PoseMaps | None = None,
        codec: nn.Module | None = None,
    ):
        """sampler: default the spec's; start_bank: {"frames": (N, K, H, W, 3) uint8, "actions": (N, K-1, A),
        "states": (N, K, nq+nv) with a state track} real start contexts for `random_start`;
        dynamics: the state track (`StateDynamics`) when the spec has one; pose_maps: draws the
        states' pose maps when the spec has them (default: built from the spec's task);
        provenance: where the weights came from (data, steps); codec: a latent model's frame codec
        (`models.codec.FrameCodec`, when the spec has one);
        compile: `torch.compile` the denoiser (fuses the norm and activation chains around each
        convolution; the first step of each new batch size compiles, ~35 s on a 2-core CPU); on
        CUDA in "reduce-overhead" mode, whose CUDA graphs replay a small batch's hundreds of kernel
        launches as one (`worldmodel.compiling.compile_mode`)."""
        self.device = torch.device(device)
        self.denoiser = denoiser.to(self.device).eval()
        self.reward_head = reward_head.to(self.device).eval()
        if spec.has_state and dynamics is None:
            raise ValueError("this spec has a state track: pass its `dynamics` network.")
        self.dynamics = dynamics.to(self.device).eval() if spec.has_state else None
        if bool(spec.codec) != (codec is not None):
            raise ValueError("pass a `codec` exactly when the spec has one (a latent model).")
        self.codec = None if codec is None else codec.to(self.device).eval()
        if spec.pose and pose_maps is None:  # drawn at the resolution the denoiser works at
            pose_maps = PoseMaps.from_spec(spec.task, spec.diffused_shape, spec.pose)
        self.pose_maps = pose_maps if spec.pose else None
        self.spec = spec
        self.edm, self.context, self.sampler = spec.edm, spec.context, sampler or spec.sampler
        self.frame_shape = tuple(spec.frame_shape)
        self.action_space = spec.action_space
        self.start_bank = start_bank or {}
        self.provenance = provenance or {}
        self.bf16 = bf16
        if self.device.type == "cpu":
            self.denoiser = self.denoiser.to(memory_format=torch.channels_last)
        self.conditioner = Conditioner(denoiser, self.dynamics, self.pose_maps)
        if compile:
            self.denoiser = torch.compile(self.denoiser, dynamic=False, mode=compile_mode(self.device))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        bf16: bool | None = None,
        compile: bool = False,
        **sampler_overrides: Any,
    ) -> WorldModel:
        """Rebuilds the model of a checkpoint written by training (`model.pt`); needs nothing else.

        device: "cpu", "cuda", ... or "auto" (CUDA when available);
        bf16: autocast the networks (default: where the hardware computes bf16, `compiling.default_bf16`);
        compile: see `__init__`.
        sampler_overrides: e.g. steps=5, method="heun", context_sigma=0.01.
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        spec = ckpt["spec"]
        denoiser, reward_head = build_networks(spec.denoiser, spec.reward_head, spec.action_space, spec.context, spec.target)
        dynamics = build_dynamics(spec.dynamics, spec.action_space)
        codec = FrameCodec(**spec.codec) if spec.codec else None
        for name, net in (("denoiser", denoiser), ("reward_head", reward_head), ("dynamics", dynamics), ("codec", codec)):
            if net is None:
                continue
            try:
                net.load_state_dict(ckpt[name])
            except RuntimeError as error:  # missing, unexpected or mis-shaped weights
                raise CheckpointError(f"{path}: its {name} weights do not fit the network its spec describes: {error}") from error
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        bf16 = default_bf16(device) if bf16 is None else bf16
        if bf16:
            convolutions_to_bf16(denoiser, reward_head, codec)
        return cls(
            denoiser,
            reward_head,
            spec,
            dataclasses.replace(spec.sampler, **sampler_overrides),
            start_bank=ckpt["start_bank"],
            provenance=ckpt["provenance"],
            device=device,
            bf16=bf16,
            compile=compile,
            dynamics=dynamics,
            codec=codec,
        )

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """The shape of one action, (A,)."""
        return tuple(self.action_space["shape"])

    def _check_actions(self, name: str, actions: Tensor, leading: tuple[int | None, ...]) -> None:
        """actions must be (*leading, *action_shape) (None: any length there) and finite."""
        shape = (*leading, *self.action_shape)
        if actions.ndim != len(shape) or any(want is not None and got != want for got, want in zip(actions.shape, shape)):
            wanted = tuple("N" if d is None else d for d in shape)
            raise ValueError(f"{name} must have shape {wanted} (batch, ..., action shape {self.action_shape}), got {tuple(actions.shape)}.")
        if not torch.isfinite(actions.float()).all():
            raise ValueError(f"{name} contain NaN or inf.")

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        """(nq + nv,): the simulator state a start context must give, or None (no state track)."""
        return (self.spec.dynamics["nq"] + self.spec.dynamics["nv"],) if self.spec.has_state else None

    def window(self, context_frames: Tensor, context_actions: Tensor, context_states: Tensor | None = None) -> Window:
        """Validates a start context and moves it to the model's device.

        context_frames: (B, K, H, W, 3) uint8, real or imagined; context_actions: (B, K-1, *A), the
        actions between them; context_states: (B, K, nq+nv) the simulator state [qpos, qvel] of each
        frame, needed by a model with a state track (`state_shape`), ignored by others.
        Raises ValueError naming the first input with a wrong shape, dtype or value.
        """
        k, (h, w, c) = self.context, self.frame_shape
        if context_frames.dtype != torch.uint8 or context_frames.ndim != 5 or tuple(context_frames.shape[1:]) != (k, h, w, c):
            raise ValueError(
                f"context_frames must be (B, {k}, {h}, {w}, {c}) uint8, got {tuple(context_frames.shape)} {context_frames.dtype}."
            )
        b = context_frames.shape[0]
        self._check_actions("context_actions", context_actions, (b, k - 1))
        states = None
        if self.state_shape is not None:
            want = (b, k, *self.state_shape)
            if context_states is None:
                raise ValueError(
                    f"this model draws its frames from the simulator state: give context_states {want}, the [qpos, qvel] "
                    "of each context frame (recorded files hold them; a MuJoCo env has them in env.unwrapped.data)."
                )
            states = torch.as_tensor(context_states, dtype=torch.float32)
            if tuple(states.shape) != want or not torch.isfinite(states).all():
                raise ValueError(
                    f"context_states must be finite and of shape {want} ([qpos, qvel] of each context frame), got {tuple(states.shape)}."
                )
            states = states.to(self.device)
        frames = context_frames.to(self.device)
        return Window(frames, self._as_actions(context_actions), states, None if self.codec is None else self._encode(frames))

    @torch.no_grad()
    def _encode(self, frames: Tensor) -> Tensor:
        """(B, T, H, W, 3) uint8 -> (B, T, C, h, w) float32 latents."""
        with self._autocast():
            latents = self.codec.encode(rearrange(to_model(frames), "b t c h w -> (b t) c h w")).float()
        return rearrange(latents, "(b t) c h w -> b t c h w", b=frames.shape[0])

    def _as_actions(self, actions: Tensor) -> Tensor:
        return actions.to(self.device, torch.float32)

    @torch.no_grad()
    def step_inputs(self, window: Window, actions: Tensor, generator: Generators = None) -> StepInputs:
        """What the denoiser samples B worlds' next frame from: their window slid by `actions` (B, *A)
        (the state track's next state, its features and pose maps; the context noised to the
        sampler's context level) and the target's unit noise. Shared by `step` and distillation."""
        b = len(window)
        self._check_actions("actions", actions, (b,))
        dev = self.device
        step_actions = torch.cat([window.actions, self._as_actions(actions)[:, None]], dim=1)  # (B, K, *A)
        state, conditioning = None, {}
        if self.dynamics is not None:  # the frame is drawn where the imagined next state puts the bodies
            state = self.dynamics(window.states[:, -1], step_actions[:, -1])
            states = torch.cat([window.states, state[:, None]], dim=1)
            conditioning = self.conditioner(states[..., : self.dynamics.nq], states[..., self.dynamics.nq :])
        diffused = to_model(window.frames) if self.codec is None else window.latents  # (B, K, C, h, w): what the denoiser sees
        context_sigma = max(self.sampler.context_sigma, self.edm.sigma_min)
        context = diffused + context_sigma * randn(diffused.shape, generator, dev)
        target_noise = randn((b, 1, *diffused.shape[2:]), generator, dev)
        return StepInputs(step_actions, context, context_sigma, target_noise, conditioning, state)

    def denoise_fn(self, inputs: StepInputs, denoiser: nn.Module | None = None) -> Denoise:
        """`x (B, 1, C, H, W) at sigma -> D(x; sigma)` for the sampler, given a step's inputs;
        denoiser: another network of the same spec in place of the model's (a student being distilled)."""
        context_sigma = torch.full((len(inputs.context),), inputs.context_sigma, device=self.device)
        return next_frame_denoiser(
            self.edm,
            self.denoiser if denoiser is None else denoiser,
            inputs.context,
            context_sigma,
            inputs.actions,
            inputs.conditioning,
            self._autocast,
        )

    @torch.no_grad()
    def step(self, window: Window, actions: Tensor, generator: Generators = None) -> tuple[Window, Step]:
        """Samples the next frame of B worlds and slides their window by one.

        window: from `window(...)` or a previous step; actions: (B, *A), leading from the window's
        last frame to the new one. generator: the source of all sampling noise, one for the batch or
        one per world (then a world's frames do not depend on the others in the batch).
        Returns the slid window and the step's frame, reward and termination probability.
        """
        inputs = self.step_inputs(window, actions, generator)
        step_actions = inputs.actions
        new = sample(self.denoise_fn(inputs), inputs.target_noise, self.sampler, generator)
        latent = None
        if self.codec is not None:  # the frame is decoded once, for the observation and the reward head
            latent = new[:, 0]
            with self._autocast():
                new = self.codec.decode(latent).float()[:, None]
        new = new.clamp(-1, 1)
        states = None  # the reward head reads the transition's two states: the window's last and the imagined next
        if self.reward_head.state is not None:
            states = self.dynamics.features(torch.cat([window.states[:, -1:], inputs.state[:, None]], dim=1))
        with self._autocast():
            reward, logit, success = self.reward_head(
                torch.cat([to_model(window.frames[:, -1:]), new], dim=1), step_actions[:, -1:], states
            )
        # The window slides on the sampled frame rounded to uint8, as an env would see it.
        frame = to_uint8(new)[:, 0]
        success = None if success is None else torch.sigmoid(success[:, 0].float())
        return (
            window.slide(frame, step_actions[:, -1], inputs.state, latent),
            Step(frame, reward[:, 0].float(), torch.sigmoid(logit[:, 0].float()), inputs.state, success),
        )

    def imagine(
        self,
        context_frames: Tensor,
        context_actions: Tensor,
        actions: Tensor,
        generator: Generators = None,
        context_states: Tensor | None = None,
    ) -> Imagined:
        """Imagines N steps for B worlds by sliding the window of the last K frames.

        context_frames: (B, K, H, W, 3) uint8, the last K frames (real or imagined);
        context_actions: (B, K-1, *A), the actions between them;
        context_states: (B, K, nq+nv), their simulator states (a model with a state track only);
        actions: (B, N, *A), actions[:, 0] leads from the last context frame to the first new one.
        generator: the source of all sampling noise (same generator state -> same frames).
        """
        window = self.window(context_frames, context_actions, context_states)
        self._check_actions("actions", actions, (len(window), None))
        steps = []
        for t in range(actions.shape[1]):
            window, out = self.step(window, actions[:, t], generator)
            steps.append(out)
        return Imagined(
            torch.stack([s.frame for s in steps], 1).cpu(),
            torch.stack([s.reward for s in steps], 1).cpu(),
            torch.stack([s.termination_prob for s in steps], 1).cpu(),
            None if self.dynamics is None else torch.stack([s.state for s in steps], 1).cpu(),
            None if steps[0].success_prob is None else torch.stack([s.success_prob for s in steps], 1).cpu(),
        )

    def random_start(self, batch: int, generator: np.random.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
        """`batch` start contexts drawn from the checkpoint's bank of real ones: frames, actions,
        states (None for a model without a state track)."""
        return self.bank_start(generator.integers(len(self.start_bank["frames"]), size=batch))

    def bank_start(self, rows) -> tuple[Tensor, Tensor, Tensor | None]:
        """The start contexts in rows `rows` of the checkpoint's bank: frames, actions, states (None
        for a model without a state track)."""
        idx = torch.as_tensor(rows)
        states = self.start_bank["states"][idx] if self.spec.has_state else None
        return self.start_bank["frames"][idx], self.start_bank["actions"][idx], states
