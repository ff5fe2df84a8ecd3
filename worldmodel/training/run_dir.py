"""The run directory's files: the config a run started with, and the accelerate state saved atomically.

    run_dir/config.json        the config the run was started with (resume refuses another)
    run_dir/state/             accelerate state: weights, optimiser, scheduler, EMA, RNG, progress
    run_dir/model.pt           the exported, self-contained checkpoint (EMA weights)
    run_dir/validation/        side-by-side videos of imagined vs real rollouts
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

# Keys that may differ when resuming: they do not change what is being trained.
RESUMABLE_KEYS = ("steps", "resume", "log_every", "save_every", "val_every", "tensorboard")


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def prepare(run_dir: Path, cfg: dict[str, Any], accelerator: Accelerator) -> None:
    """Creates the run directory and writes config.json; on resume, refuses a config that differs
    in anything but RESUMABLE_KEYS; refuses to start a new run over an existing one."""
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_file = run_dir / "config.json"
        if cfg.get("resume") and config_file.exists():
            _check_resume_config(run_dir, cfg)
        elif (run_dir / "state").exists() and not cfg.get("resume"):
            raise TrainingError(f"{run_dir} already holds a run. Pass resume=true to continue it, or choose another run_dir.")
        else:
            config_file.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    accelerator.wait_for_everyone()


def _check_resume_config(run_dir: Path, cfg: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text())
    diff = sorted(k for k in set(saved) | set(cfg) if k not in RESUMABLE_KEYS and saved.get(k) != cfg.get(k))
    if diff:
        raise TrainingError(
            f"Cannot resume {run_dir}: the config differs in {diff}. Resume with the original config "
            f"({run_dir / 'config.json'}) or start a new run_dir."
        )


def save_state(accelerator: Accelerator, run_dir: Path) -> None:
    """Saves to state.tmp and renames: a crash mid-save keeps the previous state."""
    tmp, final = run_dir / "state.tmp", run_dir / "state"
    accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        old = run_dir / "state.old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
