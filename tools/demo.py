"""The demo: a pretrained world model shipped with the project imagines held-out episodes (fidelity
against copy-last, a side-by-side video) and plans in the real simulator, in a few minutes on a
CPU; with train=true it first records data and trains its own small model.

    python tools/demo.py                (what `make demo` runs: pretrained/reacher.pt)
    python tools/demo.py task=pusher    (what `make demo TASK=pusher` runs: pretrained/pusher.pt, the arm task)
    python tools/demo.py train=true     (what `make demo TRAIN=1` runs: record, train, then the same)

Writes out/report.html (one self-contained page: numbers, plots, video) and out/summary.md.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from worldmodel.checks import check_counts
from worldmodel.evaluation.report import write_report

TOOLS = Path(__file__).parent


def run(stage: str, tool: str, *args: str, timings: dict) -> None:
    """Runs one tool as a user would (its own progress bars), timing it."""
    print(f"\n== {stage}: python tools/{tool} {' '.join(args)}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(TOOLS / tool), *args], check=True)
    timings[stage] = round(time.perf_counter() - start, 1)


@hydra.main(config_path="../configs", config_name="demo", version_base=None)
def main(cfg: DictConfig) -> None:
    check_counts(cfg, steps=1, dynamics_steps=1, episodes=1, held_out_episodes=1, held_out_steps=13, plan_episodes=1)
    out = Path(cfg.out)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    task = cfg.task.name
    val = out / f"{task}_val.h5"
    timings: dict[str, float] = {}
    if cfg.train:
        data, run_dir = out / f"{task}.h5", out / "run"
        checkpoint = run_dir / "model.pt"
        if not data.exists():
            run(
                "record training data",
                "record_rollouts.py",
                f"task={task}",
                "policy=mixture",
                f"episodes={cfg.episodes}",
                "seed=0",
                "workers=2",
                f"out={data}",
                timings=timings,
            )
        if checkpoint.exists():
            print(f"\n== train: reusing {checkpoint} (delete {run_dir} to retrain)")
        else:
            run(
                "train",
                "train.py",
                f"data={data}",
                f"run_dir={run_dir}",
                f"steps={cfg.steps}",
                f"dynamics.steps={cfg.dynamics_steps}",
                "optim.lr=5e-4",
                "optim.warmup_steps=50",
                "val_every=0",
                "save_every=100",
                timings=timings,
            )
    else:
        checkpoint = Path(cfg.checkpoint or f"pretrained/{task}.pt")
        if not checkpoint.exists():
            raise FileNotFoundError(
                f"No pretrained model at {checkpoint}: restore it (git checkout {checkpoint}), demo a task the project "
                f"ships a model for ({', '.join(sorted(p.stem for p in Path('pretrained').glob('*.pt')))}), or train one "
                f"with `make demo TRAIN=1 TASK={task}` (python tools/demo.py train=true task={task})."
            )
    if not val.exists():  # seed 7: episodes no training run here saw (the pretrained model's held-out set, README)
        run(
            "record held-out data",
            "record_rollouts.py",
            f"task={task}",
            "policy=mixture",
            f"episodes={cfg.held_out_episodes}",
            "seed=7",
            f"task.episode_steps={cfg.held_out_steps}",
            "workers=2",
            f"out={val}",
            timings=timings,
        )
    run(
        "imagine and evaluate fidelity",
        "evaluate.py",
        f"checkpoint={checkpoint}",
        f"data={val}",
        f"out={out / 'eval'}",
        f"episodes={cfg.held_out_episodes}",
        "videos=4",
        "probe=false",
        timings=timings,
    )
    run("plan (MPC)", "plan.py", f"checkpoint={checkpoint}", f"episodes={cfg.plan_episodes}", f"out={out / 'plan'}", timings=timings)
    timings["total"] = round(time.perf_counter() - start, 1)
    fidelity = json.loads((out / "eval" / "metrics.json").read_text())
    planning = json.loads((out / "plan" / "metrics.json").read_text())
    summary = write_report(out, checkpoint, fidelity, planning, timings)
    print("\n" + summary)


if __name__ == "__main__":
    main()
