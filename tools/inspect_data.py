"""Summarise a rollout file per policy, and optionally write one episode as a video.

python tools/inspect_data.py data=data/reacher.h5
python tools/inspect_data.py data=data/reacher.h5 video=outputs/reacher_ep3.mp4 episode=3 scale=4
"""

import hydra
from omegaconf import DictConfig

from worldmodel.checks import check_counts
from worldmodel.data.inspect import summarize, write_video
from worldmodel.data.reader import RolloutReader


@hydra.main(config_path="../configs", config_name="inspect_data", version_base=None)
def main(cfg: DictConfig) -> None:
    check_counts(cfg, episode=0, scale=1, fps=1)
    try:
        with RolloutReader(cfg.data) as reader:
            print(summarize(reader))
            if cfg.video:
                out = write_video(reader, cfg.episode, cfg.video, cfg.scale, cfg.fps)
                print(f"\nwrote episode {cfg.episode} ({reader.lengths[cfg.episode] + 1} frames) to {out}")
    except (OSError, ValueError, IndexError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
