"""Samplers of the probability-flow ODE (Euler, Heun) and its stochastic variant (churn).

Each takes `denoise(x, sigma) -> D(x; sigma)`, the clean-frame estimate, so they know nothing of
networks or conditioning; a closure binds those. A sampler is one function registered in
`SAMPLERS`: `(denoise, x at sigmas[0], sigmas, cfg, generator) -> x at sigmas[-1]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from worldmodel.diffusion.schedules import make_sigmas
from worldmodel.registry import Registry

Denoise = Callable[[Tensor, Tensor], Tensor]  # (x, sigma scalar tensor) -> D(x; sigma)
Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass(frozen=True)
class SamplerConfig:
    """method: a name in SAMPLERS (euler | heun | churn); steps; schedule: karras | cosine;
    churn: Karras et al.'s S_churn over all steps (churn only); context_sigma: the noise level context
    frames are given (and noised with) while sampling."""

    method: str = "euler"
    steps: int = 3
    schedule: str = "karras"
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    churn: float = 0.0
    context_sigma: float = 0.005

    def __post_init__(self):
        SAMPLERS.get(self.method)  # unknown names fail here, with the known ones listed
        if self.steps < 1:
            raise ValueError(f"sampler steps must be >= 1, got {self.steps}.")

    def sigmas(self) -> Tensor:
        kwargs = dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max)
        if self.schedule == "karras":
            kwargs["rho"] = self.rho
        return make_sigmas(self.schedule, self.steps, **kwargs)


Sampler = Callable[[Denoise, Tensor, Tensor, SamplerConfig, Generators], Tensor]
SAMPLERS: Registry[Sampler] = Registry("sampler")


def randn(shape: Sequence[int], generator: Generators = None, device: str | torch.device = "cpu") -> Tensor:
    """Unit Gaussian noise on `device`, drawn where its generator lives: CPU generators give the
    same noise on any device; generators on the model's GPU (the env's are) spare the host drawing
    and copying K+1 frames of noise per world and step, which for a large vector env costs the host
    more than the GPU's denoising (docs/benchmarks.md).

    generator: one for the whole batch, or one per row of the batch (dim 0): then each row's noise
    depends on its own generator only, and a world sampled in a batch of N gets the same noise as
    the same world sampled alone.
    """
    if generator is None or isinstance(generator, torch.Generator):
        noise = torch.randn(tuple(shape), generator=generator, device="cpu" if generator is None else generator.device)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators given for a batch of {shape[0]}; give one per row.")
        noise = torch.cat([torch.randn((1, *shape[1:]), generator=g, device=g.device) for g in generator])
    return noise.to(device)


def sample(denoise: Denoise, noise: Tensor, cfg: SamplerConfig, generator: Generators = None) -> Tensor:
    """Integrates from `noise` (unit Gaussian) at the schedule's first sigma down to 0 with `cfg.method`."""
    sigmas = cfg.sigmas().to(device=noise.device, dtype=noise.dtype)
    return SAMPLERS.get(cfg.method)(denoise, noise * sigmas[0], sigmas, cfg, generator)


def _heun_correct(denoise: Denoise, x: Tensor, x_next: Tensor, d: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """The second-order correction of one step (none on the last step, to sigma 0)."""
    if float(sigma_next) <= 0:
        return x_next
    d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * (d + d_next) / 2


@SAMPLERS.register("euler")
def euler(denoise: Denoise, x: Tensor, sigmas: Tensor, cfg: SamplerConfig, generator: Generators = None) -> Tensor:
    """Deterministic first order (DDIM-equivalent): one network call per step."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (sigma_next - sigma) * (x - denoise(x, sigma)) / sigma
    return x


@SAMPLERS.register("heun")
def heun(denoise: Denoise, x: Tensor, sigmas: Tensor, cfg: SamplerConfig, generator: Generators = None) -> Tensor:
    """Deterministic second order: one more network call per step but the last."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, sigma)) / sigma
        x = _heun_correct(denoise, x, x + (sigma_next - sigma) * d, d, sigma, sigma_next)
    return x


@SAMPLERS.register("churn")
def churn(denoise: Denoise, x: Tensor, sigmas: Tensor, cfg: SamplerConfig, generator: Generators = None) -> Tensor:
    """Karras et al.'s stochastic sampler: adds noise back (S_churn = cfg.churn over all steps)
    before each Heun step."""
    steps = len(sigmas) - 1
    gamma = min(cfg.churn / steps, math.sqrt(2.0) - 1.0)
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        sigma_hat = sigma * (1 + gamma)
        x = x + (sigma_hat**2 - sigma**2).sqrt() * randn(x.shape, generator, x.device).to(x.dtype)
        d = (x - denoise(x, sigma_hat)) / sigma_hat
        x = _heun_correct(denoise, x, x + (sigma_next - sigma_hat) * d, d, sigma_hat, sigma_next)
    return x
