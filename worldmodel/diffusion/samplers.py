"""Samplers of the probability-flow ODE (Euler, Heun) and its stochastic variant (churn).

Each takes `denoise(x, sigma) -> D(x; sigma)`, the clean-frame estimate, so they know nothing of
networks or conditioning; a closure binds those.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

Denoise = Callable[[Tensor, Tensor], Tensor]  # (x, sigma scalar tensor) -> D(x; sigma)
SAMPLERS = ("euler", "heun", "churn")
Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(shape: Sequence[int], generator: Generators = None, device: str | torch.device = "cpu") -> Tensor:
    """Unit Gaussian noise drawn on the CPU, so the same seed gives the same noise on any device.

    generator: one for the whole batch, or one per row of the batch (dim 0): then each row's noise
    depends on its own generator only, and a world sampled in a batch of N gets the same noise as
    the same world sampled alone.
    """
    if generator is None or isinstance(generator, torch.Generator):
        noise = torch.randn(tuple(shape), generator=generator)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators given for a batch of {shape[0]}; give one per row.")
        noise = torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generator])
    return noise.to(device)


def sample(
    denoise: Denoise,
    noise: Tensor,
    sigmas: Tensor,
    method: str = "euler",
    churn: float = 0.0,
    churn_range: tuple[float, float] = (0.0, math.inf),
    churn_noise: float = 1.0,
    generator: Generators = None,
) -> Tensor:
    """Integrates from `noise` (unit Gaussian) at sigmas[0] down to sigmas[-1] (usually 0).

    euler: deterministic first order (DDIM-equivalent); heun: deterministic second order
    (one more network call per step but the last); churn: Karras et al.'s stochastic sampler,
    which adds noise back (`churn` = S_churn over all steps) before each Heun step within
    `churn_range` of sigma.
    """
    if method not in SAMPLERS:
        raise ValueError(f"Unknown sampler {method!r}. Known: {list(SAMPLERS)}.")
    sigmas = sigmas.to(noise.device)
    x = noise * sigmas[0]
    steps = len(sigmas) - 1
    for i in range(steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if method == "churn" and churn_range[0] <= float(sigma) <= churn_range[1]:
            gamma = min(churn / steps, math.sqrt(2.0) - 1.0)
            sigma_hat = sigma * (1 + gamma)
            extra = randn(x.shape, generator, x.device).to(x.dtype)
            x = x + (sigma_hat**2 - sigma**2).sqrt() * churn_noise * extra
            sigma = sigma_hat
        d = (x - denoise(x, sigma)) / sigma
        x_next = x + (sigma_next - sigma) * d
        if method in ("heun", "churn") and float(sigma_next) > 0:
            d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
            x_next = x + (sigma_next - sigma) * (d + d_next) / 2
        x = x_next
    return x
