import imageio.v3 as iio

from conftest import run_tool


def test_inspect_summarises_per_policy_and_writes_videos(reacher_file, tmp_path):
    out = run_tool("inspect_data.py", f"data={reacher_file}", f"video={tmp_path / 'ep.mp4'}", "episode=2", "scale=2").stdout
    assert "episodes      6, steps 72, frames 78" in out
    for label in ("expert", "noisy_expert(eps=0.5)", "random"):
        assert label in out
    video = iio.imread(tmp_path / "ep.mp4")
    assert video.shape == (13, 128, 128, 3)
    run_tool("inspect_data.py", f"data={reacher_file}", f"video={tmp_path / 'ep.gif'}")
    assert iio.imread(tmp_path / "ep.gif").shape[0] == 13


def test_inspect_reports_bad_input_without_a_traceback(tmp_path, reacher_file):
    missing = run_tool("inspect_data.py", f"data={tmp_path / 'none.h5'}", check=False)
    assert missing.returncode == 1 and "No rollout file" in missing.stderr and "Traceback" not in missing.stderr
    out_of_range = run_tool("inspect_data.py", f"data={reacher_file}", f"video={tmp_path / 'x.mp4'}", "episode=99", check=False)
    assert out_of_range.returncode == 1 and "out of range" in out_of_range.stderr
