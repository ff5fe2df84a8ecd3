import pytest

from conftest import run_tool


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_writes_a_summary(tmp_path):
    """`make demo` at toy size (~1 minute): record, train, evaluate, plan, summarise."""
    out = tmp_path / "demo"
    result = run_tool("demo.py", f"out={out}", "steps=4", "dynamics_steps=10", "episodes=6", "held_out_episodes=2", "plan_episodes=1")
    summary = (out / "summary.md").read_text()
    assert "## Fidelity on 2 held-out episodes" in summary and "| world_model |" in summary and "- total:" in summary
    assert summary.strip() in result.stdout
    assert (out / "eval" / "side_by_side.mp4").exists() and (out / "plan" / "metrics.json").exists()
