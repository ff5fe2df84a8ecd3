"""Diffusion math, independent of any network: EDM preconditioning with a noise level per frame,
training noise distributions, sigma schedules and samplers (registered in SAMPLERS; every module of
this package is imported, so a new sampler is one file here). Needs torch only."""

from worldmodel.diffusion.edm import EDM
from worldmodel.diffusion.samplers import SAMPLERS, Generators, SamplerConfig, randn, sample
from worldmodel.diffusion.schedules import SCHEDULES, cosine_sigmas, karras_sigmas, make_sigmas
from worldmodel.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "EDM",
    "Generators",
    "SAMPLERS",
    "SCHEDULES",
    "SamplerConfig",
    "cosine_sigmas",
    "karras_sigmas",
    "make_sigmas",
    "randn",
    "sample",
]
