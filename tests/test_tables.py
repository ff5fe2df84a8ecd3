"""The result tables read themselves: verdicts on known numbers, better-directions stated, rows
that cannot say anything (a still body, an unchanging observation dimension) left out with a note."""

import numpy as np

from worldmodel.evaluation.fidelity import side_by_side
from worldmodel.evaluation.tables import fidelity_tables, planning_verdict


def result():
    hs = [1, 10]
    frames = {
        "psnr": {1: 38.9, 10: 30.0},
        "copy_last_psnr": {1: 30.9, 10: 30.1},
        "ssim": {1: 0.99, 10: 0.95},
        "copy_last_ssim": {1: 0.96, 10: 0.93},
        "flicker": {1: 1.0, 10: 1.1},
        "copy_last_flicker": {1: 1.2, 10: 0.8},
    }
    return frames | {
        "horizons": hs,
        "state_position_cm": {"fingertip": {1: 0.07, 10: 0.36}, "target": {1: 0.0, 10: 0.01}},
        "motion_cm": {"fingertip": {1: 0.9, 10: 6.0}, "target": {1: 0.0, 10: 0.0}},
        "observation_error": {1: [0.001, 0.0, 0.01], 10: [0.3, 0.0, 0.02]},
        "copy_last_observation_error": {1: [0.02, 0.0, 1.1], 10: [0.2, 0.0, 2.5]},
        "render_psnr": {1: 40.0, 10: 35.0},
        "render_ssim": {1: 0.99, 10: 0.97},
        "render_floor_psnr": {1: 80.0, 10: 79.0},
        "render_floor_ssim": {1: 1.0, 10: 1.0},
        "rendered_state_psnr": {1: 45.0, 10: 33.0},
    }


def test_fidelity_tables_give_verdicts_directions_and_drop_rows_that_say_nothing():
    table = fidelity_tables(result(), ["fingertip", "target"], "Reacher-v5")
    assert "beats copying the last frame on PSNR at 1 of 2 horizons and on SSIM at every horizon" in table
    assert "From h = 10 on its frames change more than reality does: flicker 1.10 against the real change of 0.80." in table
    assert "higher is better" in table and "lower is better" in table
    assert "| 10 | fingertip | 0.36 | 6.00 |" in table and "| 1 | target |" not in table
    assert "Not shown: target (never moves" in table and "fingertip 0.36 cm off at h = 10 (copy-last 6.00)" in table
    assert "| horizon | obs[0] | obs[2] |" in table and "Not shown: obs[1] (never change" in table
    assert "closer to the real observation than copy-last in 3 of 4 (dimension, horizon) pairs" in table
    assert "the frames follow the imagined state to 40.0 dB at h = 1 and 35.0 dB at h = 10 (floor 79.0)" in table
    assert "the imagined state would score 33.0 dB against reality at h = 10, the frames score 30.0" in table


def test_planning_verdict_compares_the_model_with_the_oracle():
    run = lambda rate: {"success_rate": rate}  # noqa: E731
    assert "matches planning on MuJoCo" in planning_verdict({"world_model": run(1.0), "oracle": run(1.0), "random": run(0.0)})
    assert "reaches 50 % of the oracle's success" in planning_verdict({"world_model": run(0.4), "oracle": run(0.8)})
    assert "fails even on MuJoCo itself" in planning_verdict({"world_model": run(0.0), "oracle": run(0.0)})


def test_the_side_by_side_video_names_its_panels():
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    video = side_by_side(frames, frames + 255, scale=8)
    assert video.shape == (2, 14 + 64, 3 * 64, 3)
    strip = video[0, :14]
    assert all(strip[:, i * 64 : (i + 1) * 64].max() > 200 for i in range(3)), "a label drawn over every panel"
    assert (video[0, 14:, 64:128] == 255).all(), "the frames themselves untouched"
