from pathlib import Path

import pytest

from conftest import run_tool

PRETRAINED = Path(__file__).parents[1] / "pretrained" / "reacher.pt"


@pytest.mark.slow
def test_demo_shows_the_pretrained_model_and_writes_one_report(tmp_path):
    """`make demo` at toy size: the pretrained model imagines held-out episodes and plans; one HTML page holds it all."""
    out = tmp_path / "demo"
    result = run_tool("demo.py", f"out={out}", "held_out_episodes=2", "plan_episodes=1")
    summary = (out / "summary.md").read_text()
    assert f"Model: {PRETRAINED.relative_to(PRETRAINED.parents[1])}: framestack" in summary and "pose maps" in summary
    assert "## Fidelity on 2 held-out episodes" in summary and "| world_model |" in summary and "imagined state" in summary
    assert summary.strip() in result.stdout
    verdicts = [line for line in summary.splitlines() if line.startswith("Verdict:")]
    assert len(verdicts) >= 3, "one verdict per section: frames, positions, planning (and the observation table)"
    assert "higher is better" in summary and "lower is better" in summary
    page = (out / "report.html").read_text()
    assert "data:video/mp4;base64," in page and "data:image/png;base64," in page and "<td>world_model</td>" in page


@pytest.mark.slow
def test_demo_trains_its_own_model_on_request(tmp_path):
    """`make demo TRAIN=1` at toy size (~1 minute): record, train, evaluate, plan, report."""
    out = tmp_path / "demo"
    run_tool("demo.py", f"out={out}", "train=true", "steps=4", "dynamics_steps=10", "episodes=6", "held_out_episodes=2", "plan_episodes=1")
    assert f"Model: {out / 'run' / 'model.pt'}: framestack" in (out / "summary.md").read_text()
    assert (out / "report.html").exists() and (out / "plan" / "metrics.json").exists()


def test_demo_of_a_task_without_a_shipped_model_says_what_to_do(tmp_path):
    """`make demo TASK=fetch_push`: no model ships for it, so the demo names the ones that do and how to train one."""
    result = run_tool("demo.py", f"out={tmp_path}", "task=fetch_push", check=False)
    assert result.returncode != 0
    assert "No pretrained model at pretrained/fetch_push.pt" in result.stderr and "reacher" in result.stderr
    assert "make demo TRAIN=1 TASK=fetch_push" in result.stderr
