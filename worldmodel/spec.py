"""The model spec: what was trained, in one typed, versioned record.

The trainer writes it into `model.pt`; every consumer (`WorldModel.load`, the env, evaluation,
planning) reads it, never the training config. It holds what is needed to rebuild the networks
and to serve the model in the world it was trained on: the task preset recorded with the data
(episode length and action repeat included), the frame shape, the action space and the
train/validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worldmodel.diffusion import EDM, SamplerConfig
from worldmodel.models.codec import latent_shape

SPEC_VERSION = 1


class SpecError(ValueError):
    """A spec that cannot be read by this code; the message says why and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """denoiser: {"architecture": name in `worldmodel.models.DENOISERS`, **its keyword arguments};
    reward_head: keyword arguments of `RewardTerminationHead`; context K / target F frames per window;
    edm: preconditioning and training sigma; sampler: the default sampler; action_space:
    {"type": "box", "low", "high", "shape"}; frame_shape: (H, W, 3); task: the task preset the data
    was recorded with (`TaskPreset.describe()`: name, env id, camera, episode_steps, action_repeat,
    ...); split: {"val_fraction", "split_seed"} of the training file's episodes; dynamics: the
    state track's network ({"nq", "nv", "hidden", "layers"}, `models.state_dynamics`), {} for a
    model that draws frames from frames and actions alone; pose: the pose maps the denoiser reads
    ({"bodies": [names], "sigma": pixels}, `worldmodel.pose`; needs a state track), {} for none;
    codec: a latent model's frame codec (`models.codec.FrameCodec`'s keyword arguments), whose
    latents the denoiser diffuses instead of frames (`diffused_shape`), {} for a pixel model."""

    denoiser: dict[str, Any]
    reward_head: dict[str, Any]
    context: int
    target: int
    edm: EDM
    sampler: SamplerConfig
    action_space: dict[str, Any]
    frame_shape: tuple[int, int, int]
    task: dict[str, Any]
    split: dict[str, Any] = field(default_factory=lambda: {"val_fraction": 0.1, "split_seed": 0})
    dynamics: dict[str, Any] = field(default_factory=dict)
    pose: dict[str, Any] = field(default_factory=dict)
    codec: dict[str, Any] = field(default_factory=dict)

    @property
    def task_name(self) -> str:
        return self.task["name"]

    @property
    def episode_steps(self) -> int:
        """The recorded episode length (steps): the learned env truncates there by default."""
        return int(self.task["episode_steps"])

    @property
    def has_state(self) -> bool:
        """Whether frames are drawn from a learned simulator state (which a start context must then give)."""
        return bool(self.dynamics)

    def check_data(self, data: Any, task: str, frame_shape: Sequence[int], advice: str) -> None:
        """Refuses a data file (`data`, named in the message) whose recorded task or frame shape is
        not the model's; advice: the way out."""
        if task != self.task_name or list(frame_shape) != list(self.frame_shape):
            raise ValueError(
                f"{data} holds task {task!r} frames {list(frame_shape)}, but the checkpoint models task "
                f"{self.task_name!r} frames {list(self.frame_shape)}; {advice}"
            )

    @property
    def diffused_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of what the denoiser diffuses: the frames, or a latent model's latents."""
        return latent_shape(self.frame_shape, self.codec) if self.codec else self.frame_shape

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frame_shape"] = list(self.frame_shape)
        return {"spec_version": SPEC_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        version = d.get("spec_version")
        if version != SPEC_VERSION:
            raise SpecError(
                f"model spec version {version}; this code reads version {SPEC_VERSION}. Re-export the model with this "
                "version: python tools/train.py ... resume=true on its run_dir (the weights are kept)."
            )
        names = {f.name for f in fields(cls)}
        missing = sorted(
            names - set(d) - {"dynamics", "pose", "codec"}
        )  # models written before the state track / pose maps / codecs have none
        if missing:
            raise SpecError(f"model spec lacks {missing}; the checkpoint is damaged or was written by another tool.")
        kwargs = {k: d[k] for k in names if k in d}
        kwargs["edm"], kwargs["denoiser"] = dict(kwargs["edm"]), dict(kwargs["denoiser"])
        # options measured worse and removed: a model trained without them (their off value) loads as it was
        for part, key in (("edm", "residual_scale"), ("denoiser", "state_render_channels")):
            if kwargs[part].pop(key, 0):
                raise SpecError(
                    f"the model was trained with {part}.{key}, an option measured worse and removed (docs/studies.md); retrain it without."
                )
        kwargs["edm"] = EDM(**kwargs["edm"])
        kwargs["sampler"] = SamplerConfig(**kwargs["sampler"])
        kwargs["frame_shape"] = tuple(int(s) for s in kwargs["frame_shape"])
        return cls(**kwargs)
