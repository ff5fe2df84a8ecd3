"""Distil a trained world model's multi-step sampler into one denoiser call per frame.

    python tools/distill.py teacher=runs/reacher/model.pt data=data/reacher.h5 out=runs/reacher/model_1step.pt
    python tools/distill.py teacher=runs/reacher/model.pt data=data/reacher.h5 out=runs/reacher/model_heun.pt \
        teacher_sampler.method=heun teacher_sampler.steps=2 steps=600

The student is an ordinary model.pt (one Euler step): the env, evaluation and planning load it as any other.
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from worldmodel.training.distill import DistillConfig, distill

logger = logging.getLogger("distill")


@hydra.main(config_path="../configs", config_name="distill", version_base=None)
def main(cfg: DictConfig) -> None:
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    options = DistillConfig(**{k: v for k, v in plain.items() if k not in ("teacher", "data", "out", "device")})
    result = distill(
        plain["teacher"],
        plain["data"],
        plain["out"],
        options,
        plain["device"],
        progress=lambda steps: tqdm(steps, unit="step", desc="distil"),
    )
    sampler = result["teacher_sampler"]
    print(
        f"distance to the teacher's {sampler.method} {sampler.steps}-step samples on held-out windows (mean squared, frames in "
        f"[-1, 1]): the teacher's own one call {result['gap_before']:.5f}, the student's {result['gap_after']:.5f} "
        f"({result['samples']} windows seen)"
    )
    logger.info("wrote %s", result["out"])


if __name__ == "__main__":
    main()
