"""Import data recorded elsewhere (a Minari dataset, a LeRobot dataset directory) into the HDF5 rollout format.

    python tools/import_dataset.py source=minari dataset=mujoco/reacher/expert-v0 out=data/reacher_minari.h5
    python tools/import_dataset.py source=minari dataset=my/pixels-v0 frames=pixels task=my_robot out=data/mine.h5
    python tools/import_dataset.py source=lerobot dataset=~/datasets/pusht camera=observation.image out=data/pusht.h5

Prints what was written; train on it with tools/train.py data=<out> (dynamics=none for data without simulator state).
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs.importers import write_imported

logger = logging.getLogger("import_dataset")
SOURCES = ("minari", "lerobot")


@hydra.main(config_path="../configs", config_name="import_dataset", version_base=None)
def main(cfg: DictConfig) -> None:
    size = tuple(int(s) for s in cfg.frame_size)
    if cfg.source == "minari":
        from envs.importers.minari_data import import_minari

        task = OmegaConf.to_container(cfg.task, resolve=True) if isinstance(cfg.task, DictConfig) else cfg.task
        data = import_minari(cfg.dataset, cfg.frames, task, size)
    elif cfg.source == "lerobot":
        from envs.importers.lerobot_data import import_lerobot

        data = import_lerobot(Path(cfg.dataset).expanduser(), cfg.camera, size, cfg.task)
    else:
        raise ValueError(f"Unknown source {cfg.source!r}; choose one of {list(SOURCES)}.")
    n = write_imported(
        data, cfg.out, cfg.append, lambda episodes: tqdm(episodes, total=data.count, unit="ep", desc=f"importing {cfg.source}")
    )
    md = data.metadata
    print(
        f"wrote {n} episodes of {md['task']!r} to {cfg.out}: frames {md['frame_shape']}, actions {md['action_shape']}, "
        f"state nq={md['nq']} nv={md['nv']}"
    )


if __name__ == "__main__":
    main()
