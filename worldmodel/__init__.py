"""DiffusionWorld's library: rollout data, diffusion world model, imagination, planning, evaluation."""

__version__ = "0.1.0"
