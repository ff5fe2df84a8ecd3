import json

import pytest

from conftest import run_tool


@pytest.mark.slow
def test_bench_tool_times_windows_the_training_loop_and_the_env_against_mujoco():
    result = run_tool(
        "bench.py", "only=[windows,loop,env]", "episodes=4", "num_envs=[2]", "env_rounds=2", "loop_steps=3", "loop_batch=4", "json=true"
    )
    out = json.loads(result.stdout[result.stdout.index("{") :])
    (loop,) = out["loop"]
    assert loop["steps"] == 3 and loop["samples_per_s"] > 0 and loop["first_step_s"] > 0 and loop["compile"] is False
    assert [row["num_workers"] for row in out["windows"]] == [0, 2] and all(row["windows_per_s"] > 0 for row in out["windows"])
    envs = {(row["env"], row["num_envs"]): row for row in out["env"]}
    assert set(envs) == {("DiffusionWorld-v0", 1), ("DiffusionWorld-v0 vector", 2), ("MuJoCo reacher step+render", 1)}
    assert all(row["steps_per_s"] > 0 for row in out["env"])


def test_bench_tool_refuses_unknown_sections():
    result = run_tool("bench.py", "only=[gpu]", check=False)
    assert result.returncode != 0 and "Unknown bench sections ['gpu']" in result.stderr


@pytest.mark.slow
def test_bench_tool_reports_training_memory_that_does_not_grow_with_the_data():
    result = run_tool("bench.py", "only=[memory]", "episodes=3", "json=true")
    rows = json.loads(result.stdout[result.stdout.index("{") :])["memory"]
    assert [row["episodes"] for row in rows] == [3, 12] and rows[1]["file_mb"] > rows[0]["file_mb"]
    assert 200 < rows[0]["peak_rss_mb"] and rows[1]["peak_rss_mb"] < 1.25 * rows[0]["peak_rss_mb"]
