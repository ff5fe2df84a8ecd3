"""The demo, end to end on a CPU in about 15 minutes: record reacher rollouts, train the default
world model briefly (or reuse outputs/demo/run/model.pt), evaluate its fidelity on held-out
episodes, plan with it in the real simulator, and summarise.

    python tools/demo.py            (what `make demo` runs; writes outputs/demo/, prints summary.md)
    python tools/demo.py steps=600  (train longer; delete outputs/demo/run to retrain)
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

TOOLS = Path(__file__).parent


def run(stage: str, tool: str, *args: str, timings: dict) -> None:
    """Runs one tool as a user would (its own progress bars), timing it."""
    print(f"\n== {stage}: python tools/{tool} {' '.join(args)}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(TOOLS / tool), *args], check=True)
    timings[stage] = round(time.perf_counter() - start, 1)


@hydra.main(config_path="../configs", config_name="demo", version_base=None)
def main(cfg: DictConfig) -> None:
    out = Path(cfg.out)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data, val, run_dir = out / "reacher.h5", out / "reacher_val.h5", out / "run"
    checkpoint = run_dir / "model.pt"
    timings: dict[str, float] = {}
    if not data.exists():
        run("record training data", "record_rollouts.py", "task=reacher", "policy=mixture", f"episodes={cfg.episodes}", "seed=0",
            "workers=2", f"out={data}", timings=timings)
    if not val.exists():
        run("record held-out data", "record_rollouts.py", "task=reacher", "policy=mixture", f"episodes={cfg.held_out_episodes}", "seed=1",
            "task.episode_steps=60", "workers=2", f"out={val}", timings=timings)
    if checkpoint.exists():
        print(f"\n== train: reusing {checkpoint} (delete {run_dir} to retrain)")
    else:
        run("train", "train.py", f"data={data}", f"run_dir={run_dir}", f"steps={cfg.steps}", f"dynamics.steps={cfg.dynamics_steps}",
            "optim.lr=5e-4", "optim.warmup_steps=50", "val_every=0", "save_every=100", timings=timings)
    run("evaluate fidelity", "evaluate.py", f"checkpoint={checkpoint}", f"data={val}", f"out={out / 'eval'}",
        "episodes=8", "videos=4", timings=timings)
    run("plan (MPC)", "plan.py", f"checkpoint={checkpoint}", "planner=cem", f"episodes={cfg.plan_episodes}", f"out={out / 'plan'}", timings=timings)
    timings["total"] = round(time.perf_counter() - start, 1)
    fidelity = json.loads((out / "eval" / "metrics.json").read_text())
    planning = json.loads((out / "plan" / "metrics.json").read_text())
    trained = json.loads((run_dir / "config.json").read_text())
    summary = "\n".join([
        "# DiffusionWorld demo",
        "",
        f"Model: {checkpoint} (framestack, trained {trained['steps']} steps on {data}).",
        "",
        f"## Fidelity on {len(fidelity['episodes'])} held-out episodes ({val}), from {trained['window']['context']} real frames under the recorded actions",
        "",
        fidelity["table"],
        "",
        f"Plots: {out / 'eval' / 'fidelity.png'}; video (real | imagined | |difference|): {out / 'eval' / 'side_by_side.mp4'}",
        "",
        "## MPC in the real MuJoCo reacher (CEM on the predicted reward; oracle: the same planner on MuJoCo)",
        "",
        planning["table"],
        "",
        "## Wall time (s)",
        "",
        *(f"- {stage}: {seconds}" for stage, seconds in timings.items()),
    ])
    (out / "summary.md").write_text(summary + "\n")
    print("\n" + summary)


if __name__ == "__main__":
    main()
