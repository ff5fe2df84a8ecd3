import imageio.v3 as iio
import pytest

from worldmodel.data.inspect import main


def test_inspect_summarises_per_policy_and_writes_videos(reacher_file, tmp_path, capsys):
    main([str(reacher_file), "--video", str(tmp_path / "ep.mp4"), "--episode", "2", "--scale", "2"])
    out = capsys.readouterr().out
    assert "episodes      6, steps 72, frames 78" in out
    for label in ("expert", "noisy_expert(eps=0.5)", "random"):
        assert label in out
    video = iio.imread(tmp_path / "ep.mp4")
    assert video.shape == (13, 128, 128, 3)
    main([str(reacher_file), "--video", str(tmp_path / "ep.gif")])
    assert iio.imread(tmp_path / "ep.gif").shape[0] == 13


def test_inspect_reports_bad_input_without_a_traceback(tmp_path, reacher_file):
    with pytest.raises(SystemExit, match="No rollout file"):
        main([str(tmp_path / "none.h5")])
    with pytest.raises(SystemExit, match="out of range"):
        main([str(reacher_file), "--video", str(tmp_path / "x.mp4"), "--episode", "99"])
