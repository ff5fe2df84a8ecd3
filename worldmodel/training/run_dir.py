"""The run directory's files: the config a run started with, and the accelerate state saved atomically.

run_dir/config.json        the config the run was started with (resume refuses another)
run_dir/data.json          the fingerprint of its data (resume refuses data that changed)
run_dir/state/             accelerate state: weights, optimiser, scheduler, EMA, RNG, progress
                           (state.old/ between the two renames of a save)
run_dir/model.pt           the exported, self-contained checkpoint (EMA weights)
run_dir/validation/        side-by-side videos of imagined vs real rollouts
run_dir/speed.json         the last session's training speed: samples/s after its first step, and that step's seconds
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelerate import Accelerator

if TYPE_CHECKING:
    from worldmodel.training.config import TrainConfig

# Keys that may differ when resuming: they do not change what is being trained. The run folder
# may have moved; the data file may have moved too (its content is compared instead).
RESUMABLE_KEYS = ("steps", "resume", "log_every", "save_every", "val_every", "tensorboard", "run_dir", "data")


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def latest_state(run_dir: Path) -> Path | None:
    """The newest saved state: state/, or state.old/ when a save stopped between its renames (both
    are complete: a state is written as state.tmp/ and only then renamed)."""
    return next((run_dir / name for name in ("state", "state.old") if (run_dir / name).is_dir()), None)


def prepare(run_dir: Path, cfg: TrainConfig, data: dict[str, Any], accelerator: Accelerator) -> None:
    """Creates the run directory and writes config.json and data.json (`data`: the data's
    `dataset_fingerprint`); on resume, refuses a config that differs in anything but
    RESUMABLE_KEYS and data whose content changed; refuses to start a new run over an existing one."""
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_file = run_dir / "config.json"
        data = {k: v for k, v in data.items() if k != "path"}
        if cfg.resume and config_file.exists():
            _check_resume(run_dir, cfg.plain(), data)
        elif latest_state(run_dir) is not None and not cfg.resume:
            raise TrainingError(f"{run_dir} already holds a run. Pass resume=true to continue it, or choose another run_dir.")
        else:
            config_file.write_text(json.dumps(cfg.plain(), indent=2, sort_keys=True))
            (run_dir / "data.json").write_text(json.dumps(data, indent=2))
    accelerator.wait_for_everyone()


def _check_resume(run_dir: Path, cfg: dict[str, Any], data: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text())
    diff = sorted(k for k in set(saved) | set(cfg) if k not in RESUMABLE_KEYS and saved.get(k) != cfg.get(k))
    if diff:
        raise TrainingError(
            f"Cannot resume {run_dir}: the config differs in {diff}. Resume with the original config "
            f"({run_dir / 'config.json'}) or start a new run_dir."
        )
    data_file = run_dir / "data.json"
    started = json.loads(data_file.read_text()) if data_file.exists() else None
    if started is not None and started != data:
        raise TrainingError(
            f"Cannot resume {run_dir}: its data changed since the run started ({started['episodes']} episodes, "
            f"{started['frames']} frames then; {cfg['data']} holds {data['episodes']} episodes, {data['frames']} frames now). "
            "Resume with the data it started on, or train on the new data in a new run_dir."
        )


def save_state(accelerator: Accelerator, run_dir: Path) -> None:
    """Saves to state.tmp and renames: a crash mid-save keeps the previous state."""
    tmp, final, old = run_dir / "state.tmp", run_dir / "state", run_dir / "state.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # a save that was cut short
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)  # older than state/: a save stopped before deleting it
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def write_speed(run_dir: Path, speed: dict[str, float]) -> None:
    """speed.json: how fast this session trained (`trainer.Throughput.summary`), for benchmarks and logs."""
    (run_dir / "speed.json").write_text(json.dumps(speed, indent=2))
