"""The position probe on cases with known answers."""

import numpy as np
import pytest
import torch

from worldmodel.evaluation.probe import Probe, position_errors, train_probe


def dots(n, size=32, seed=0):
    """Frames with one bright 3x3 square on black; its centre in 'metres' = pixels / 100."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(2, size - 2, (n, 2))
    frames = np.zeros((n, size, size, 3), np.uint8)
    for f, (y, x) in zip(frames, centre):
        f[y - 1 : y + 2, x - 1 : x + 2] = 255
    return frames, (centre[:, None, ::-1] / 100).astype(np.float32)  # (n, 1, 2): (x, y)


def test_probe_reads_a_dot_to_a_fraction_of_a_pixel_and_round_trips(tmp_path):
    frames, points = dots(3000)
    probe = train_probe(frames, points, ["dot"], steps=600, batch=64, lr=2e-3)
    test_frames, test_points = dots(200, seed=1)
    err_cm = position_errors(probe, torch.from_numpy(test_frames), test_points)  # 1 px = 1 cm here
    assert err_cm.shape == (200, 1) and err_cm.mean() < 0.5, err_cm.mean()
    # A wrong frame is measured as wrong: the dot of another frame is far off.
    assert position_errors(probe, torch.from_numpy(test_frames[::-1].copy()), test_points).mean() > 5
    probe.save(tmp_path / "probe.pt", {"dataset": "dots"})
    loaded, provenance = Probe.load(tmp_path / "probe.pt")
    assert provenance == {"dataset": "dots"} and loaded.names == ["dot"]
    assert torch.allclose(loaded(torch.from_numpy(test_frames)), probe(torch.from_numpy(test_frames)))
    with pytest.raises(ValueError, match="not a DiffusionWorld position probe"):
        torch.save({"x": 1}, tmp_path / "other.pt")
        Probe.load(tmp_path / "other.pt")
