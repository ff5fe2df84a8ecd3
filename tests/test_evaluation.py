"""Evaluation metrics on known answers, and tools/evaluate.py end to end (both modes, bad input)."""

import json

import numpy as np
import pytest
import torch

from conftest import record, run_tool
from worldmodel.data import RolloutReader, RolloutWriter
from worldmodel.evaluation.metrics import flicker, mmrv, pearson, psnr, ranks, spearman, ssim
from worldmodel.evaluation.policy_eval import bootstrap_interval, policy_statistics


def frames(seed, shape=(2, 3, 32, 32, 3)):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_identical_frames_give_perfect_scores():
    a = frames(0)
    assert torch.isinf(psnr(a, a)).all()
    torch.testing.assert_close(ssim(a, a), torch.ones(2, 3))
    assert (flicker(a, a, a, a) == 0).all()


def test_ssim_and_psnr_fall_with_noise_and_are_per_frame():
    a = frames(0).float()
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    slightly, very = (a + 5 * noise).clamp(0, 255).byte(), (a + 60 * noise).clamp(0, 255).byte()
    a = a.byte()
    assert ssim(a, slightly).shape == (2, 3)
    assert (ssim(a, very) < ssim(a, slightly)).all() and (ssim(a, slightly) < 1).all()
    assert (psnr(a, very) < psnr(a, slightly)).all()
    # SSIM of a constant shift is luminance-only: close to but below 1
    shifted = (a.float() * 0.5 + 64).byte()
    assert ssim(shifted, (shifted.float() + 10).byte()).min() > 0.9


def test_flicker_counts_change_reality_does_not_have():
    prev, now = frames(0), frames(1)
    # copying the last frame: the whole real change is missed
    expected = (now.float() - prev.float()).abs().flatten(-3).mean(-1)
    torch.testing.assert_close(flicker(prev, now, prev, prev), expected)


def test_rank_statistics_on_hand_made_cases():
    assert ranks([10, 20, 20, 5]).tolist() == [1.0, 2.5, 2.5, 0.0]
    real = np.array([1.0, 2.0, 3.0])
    assert mmrv(real, real * 10) == 0.0 and spearman(real, real**3) == pytest.approx(1.0)
    assert spearman(real, -real) == pytest.approx(-1.0) and pearson(real, 2 * real + 1) == pytest.approx(1.0)
    # reversed order: policy 0 is flipped against 1 (gap 1) and 2 (gap 2), policy 1 against both (1), policy 2 (2)
    assert mmrv(real, real[::-1]) == pytest.approx((2 + 1 + 2) / 3)
    # only the close pair 2/3 swapped: small violation
    assert mmrv(np.array([0.0, 2.0, 2.1]), np.array([0.0, 2.1, 2.0])) == pytest.approx((0 + 0.1 + 0.1) / 3)
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3]))


def test_policy_statistics_pairs_policies_and_checks_shapes():
    real = np.array([[1.0, 3.0], [5.0, 7.0]])
    stats = policy_statistics(["a", "b"], real, real + 1)
    # two episodes per policy: resampled means are the min, the mean or the max, so the 95 % interval spans min..max
    assert stats["policies"]["a"] == {
        "real_return": 2.0,
        "imagined_return": 3.0,
        "return_error": 1.0,
        "abs_episode_error": 1.0,
        "real_return_ci": [1.0, 3.0],
        "imagined_return_ci": [2.0, 4.0],
    }
    assert stats["mmrv"] == 0.0 and stats["normalized_mmrv"] == 0.0
    assert stats["pearson_r"] == pytest.approx(1.0) and "Only 2 policies" in stats["caveat"], "two points always correlate: said so"
    assert policy_statistics(list("abcd"), np.arange(8.0).reshape(4, 2), np.zeros((4, 2)))["caveat"] is None
    # reversed order over a real range of 2: MMRV (2 + 1 + 2) / 3 in return units, 5/6 of the range
    real = np.array([[1.0], [2.0], [3.0]])
    stats = policy_statistics(["a", "b", "c"], real, real[::-1])
    assert stats["mmrv"] == pytest.approx(5 / 3) and stats["normalized_mmrv"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="policies"):
        policy_statistics(["a"], real, real)


def test_bootstrap_interval_holds_the_mean_and_narrows_with_episodes():
    rng = np.random.default_rng(0)
    few, many = rng.normal(5.0, 1.0, (1, 10)), rng.normal(5.0, 1.0, (1, 1000))
    (lo_few, hi_few), (lo_many, hi_many) = bootstrap_interval(few, rng)[0], bootstrap_interval(many, rng)[0]
    assert lo_few < few.mean() < hi_few and lo_many < many.mean() < hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 4  # ~1/sqrt(100) as wide
    assert 4.8 < lo_many and hi_many < 5.2
    assert bootstrap_interval(np.full((2, 5), 3.0), rng).tolist() == [[3.0, 3.0], [3.0, 3.0]]


def evaluate(*args, check=True):
    return run_tool("evaluate.py", *args, check=check)


def test_evaluate_fidelity_end_to_end(checkpoint, reacher_file, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(f"checkpoint={checkpoint}", f"data={reacher_file}", f"out={out}", "horizons=[1,5,8]", "videos=2", "probe_steps=60")
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("position_cm", "position_floor_cm", "copy_last_position_cm"):
        assert set(metrics[key]) == {"fingertip", "target"} and set(metrics[key]["fingertip"]) == {"1", "5", "8"}
    assert "Position error (cm, lower is better)" in result.stdout and reacher_file.with_suffix(".probe.pt").exists()
    assert metrics["horizons"] == [1, 5, 8] and "held-out split" in metrics["split"]
    assert set(metrics["psnr"]) == {"1", "5", "8"} and 0 < metrics["ssim"]["1"] <= 1
    assert len(metrics["curves"]["copy_last_flicker"]) == 8
    assert (out / "fidelity.png").stat().st_size > 0 and (out / "side_by_side.mp4").stat().st_size > 0


def test_evaluate_policies_end_to_end(state_checkpoint, tmp_path):
    out = tmp_path / "policies"
    result = evaluate(
        "mode=policies",
        f"checkpoint={state_checkpoint}",
        f"out={out}",
        "policy_episodes=2",
        "policy_episode_steps=8",
        "policies=[{name: expert}, {name: noisy_expert, eps: 0.5}, {name: random}]",
        "loop=both",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["policies"]) == ["expert", "noisy_expert(eps=0.5)", "random"]
    # closed loop is the protocol; the open-loop diagnostic is reported beside it, and the table says which is which
    assert metrics["loop"] == "closed" and metrics["open_loop"]["loop"] == "open"
    assert "| expert | closed |" in result.stdout and "| expert | open |" in result.stdout
    assert "Only 3 policies" in result.stdout and "Only 3 policies" in metrics["caveat"]
    # random acts on its own rng alone: closed loop takes the very actions it took for real
    assert metrics["policies"]["random"]["imagined_return"] == metrics["open_loop"]["policies"]["random"]["imagined_return"]
    assert np.asarray(metrics["real_returns"]).shape == (3, 2) and -1 <= metrics["spearman_rho"] <= 1
    assert all(0 <= p["real_success"] <= 1 and 0 <= p["imagined_success"] <= 1 for p in metrics["policies"].values())
    assert (out / "returns.png").exists()
    assert metrics["success_pearson_r"] is not None or "success Pearson r n/a (" in metrics["table"], "a missing r says why"


def test_evaluate_bad_input_is_refused_clearly(checkpoint, reacher_file, tmp_path):
    pusher = record(tmp_path / "pusher.h5", task="pusher", policy="random", episodes=1, episode_steps=6)
    empty = tmp_path / "empty.h5"
    with RolloutReader(reacher_file) as reader, RolloutWriter(empty, reader.metadata):
        pass
    cases = [
        ([f"data={pusher}"], "checkpoint models task 'reacher'"),
        ([f"data={empty}"], "no episodes"),
        (["mode=dream"], "Unknown mode"),
        (["mode=policies", "policies=[{name: telepathy}]"], "Unknown policy"),
        ([], "needs data="),
        ([f"data={reacher_file}", f"probe_data={tmp_path / 'gone.h5'}"], "pass probe_data=PATH"),
    ]
    for args, message in cases:
        result = evaluate(f"checkpoint={checkpoint}", f"out={tmp_path / 'x'}", *args, check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr[-2000:])
        assert not (tmp_path / "x").exists(), "a failed evaluation leaves no empty output folder"


def test_a_success_correlation_that_cannot_be_computed_says_why():
    from worldmodel.data.format import Episode
    from worldmodel.evaluation.policy_eval import evaluate_in_imagination

    class Still:  # imagines zero reward whatever happens
        context, state_shape = 2, None

        def imagine(self, frames, context_actions, actions, generator=None, context_states=None):
            return type("Imagined", (), {"rewards": torch.zeros(actions.shape[:2])})()

    def episode(success):
        return Episode(
            frames=np.zeros((5, 4, 4, 3), np.uint8),
            qpos=np.zeros((5, 1)),
            qvel=np.zeros((5, 1)),
            actions=np.zeros((4, 1), np.float32),
            rewards=np.zeros(4, np.float32),
            terminated=np.zeros(4, bool),
            truncated=np.zeros(4, bool),
            success=np.array([False] * 3 + [success]),
            seed=0,
            policy={"name": "x"},
        )

    stats = evaluate_in_imagination(Still(), ["a", "b"], [episode(True), episode(False)], 2, 0, lambda r, a: r > 1, loop="open")
    assert stats["success_pearson_r"] is None and stats["success_pearson_r_missing"] == "imagined success is the same for every policy"
    assert stats["success_max_abs_error"] == 1.0 and stats["success_source"] == "reward"  # policy a: real 1.0, imagined 0.0
    stats = evaluate_in_imagination(Still(), ["a", "b"], [episode(True), episode(False)], 2, 0, None, loop="open")
    assert stats["success_pearson_r_missing"] == "neither the imagined state, the reward nor a success head tells success here"


@pytest.mark.parametrize("first_frame", [None, 6])
def test_fidelity_scores_the_frames_from_first_frame_on(reacher_file, first_frame):
    """A world that repeats its last context frame scores exactly copy-last, on the frames from
    `first_frame` (default K) on: so models of different K can be compared on the same frames."""
    from worldmodel.evaluation.fidelity import rollout_fidelity

    class CopyWorld:
        context, state_shape = 2, None

        def imagine(self, frames, context_actions, actions, generator=None, context_states=None):
            assert frames.shape[1] == 2 and context_actions.shape[1] == 1
            return type("Imagined", (), {"frames": frames[:, -1:].expand(-1, actions.shape[1], -1, -1, -1), "states": None})()

    result = rollout_fidelity(CopyWorld(), reacher_file, [0, 1], [1, 3], 2, first_frame=first_frame)
    first = 2 if first_frame is None else first_frame
    with RolloutReader(reacher_file) as reader:
        real = torch.from_numpy(np.stack([reader.frames(e, first - 1, first + 3) for e in (0, 1)]))
    for h in (1, 3):
        assert result["psnr"][h] == result["copy_last_psnr"][h]
        assert result["copy_last_psnr"][h] == pytest.approx(float(psnr(real[:, :1], real[:, h : h + 1]).mean()))
    with pytest.raises(ValueError, match="fewer real frames"):
        rollout_fidelity(CopyWorld(), reacher_file, [0], [1], 1, first_frame=1)


def test_score_policies_in_imagination_alone(state_checkpoint, checkpoint, reacher_file, tmp_path):
    """No real episode: every policy acts closed loop from the same starts; means with intervals."""
    out = tmp_path / "score"
    result = evaluate(
        "mode=score",
        f"checkpoint={state_checkpoint}",
        f"out={out}",
        "score_starts=3",
        "score_steps=4",
        "policies=[{name: expert}, {name: random}]",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["policies"]) == ["expert", "random"] and np.asarray(metrics["imagined_returns"]).shape == (2, 3)
    for p in metrics["policies"].values():
        low, high = p["imagined_return_ci"]
        assert low <= p["imagined_return"] <= high and 0 <= p["imagined_success"] <= 1
    assert "start bank" in metrics["start_source"] and "| expert |" in result.stdout
    evaluate(
        "mode=score",
        f"checkpoint={state_checkpoint}",
        f"out={tmp_path / 'from_file'}",
        f"data={reacher_file}",
        "score_starts=2",
        "score_steps=3",
        "policies=[random]",
    )
    assert "episodes of" in json.loads((tmp_path / "from_file" / "metrics.json").read_text())["start_source"]
    # a model that imagines no state cannot show a state policy anything: refused before any work
    refused = evaluate("mode=score", f"checkpoint={checkpoint}", f"out={tmp_path / 'x'}", "policies=[expert]", check=False)
    assert refused.returncode != 0 and "no state track" in refused.stderr and "loop=open" in refused.stderr


@pytest.mark.parametrize(
    "tool, args, message",
    [
        ("plan.py", ["checkpoint=pretrained/reacher.pt", "out=OUT", "episodes=-1"], "episodes must be a whole number >= 1, got -1"),
        ("plan.py", ["checkpoint=pretrained/reacher.pt", "out=OUT", "replan_every=0"], "replan_every must be a whole number >= 1, got 0"),
        ("evaluate.py", ["checkpoint=pretrained/reacher.pt", "out=OUT", "episodes=-2"], "episodes must be a whole number >= 1, got -2"),
        ("evaluate.py", ["checkpoint=pretrained/reacher.pt", "out=OUT", "videos=1.5"], "videos must be a whole number >= 0, got 1.5"),
        ("imagine.py", ["checkpoint=pretrained/reacher.pt", "out=OUT", "episodes=0"], "episodes must be a whole number >= 1, got 0"),
        ("demo.py", ["out=OUT", "plan_episodes=0"], "plan_episodes must be a whole number >= 1, got 0"),
        ("bench.py", ["loop_steps=1"], "loop_steps must be a whole number >= 2, got 1"),
        ("train_policies.py", ["out=OUT", "task=reacher", "score_episodes=0"], "score_episodes must be a whole number >= 1, got 0"),
        ("inspect_data.py", ["data=missing.h5", "scale=0"], "scale must be a whole number >= 1, got 0"),
    ],
)
def test_tools_refuse_counts_below_their_minimum_before_any_work(tool, args, message, tmp_path):
    """One shared check (worldmodel.checks.check_counts): not a table of nan, a silent slice or a stack error."""
    result = run_tool(tool, *(a.replace("OUT", str(tmp_path / "out")) for a in args), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_held_out_data_never_holds_a_training_episode(checkpoint, reacher_file, tmp_path):
    """The training episodes recorded again (same seeds, so a file of another fingerprint) are
    recognised episode by episode and left out; a file of nothing else is refused."""
    from worldmodel.data.stats import episode_fingerprints
    from worldmodel.data.windows import split_episodes
    from worldmodel.evaluation.fidelity import held_out_episodes
    from worldmodel.world_model import WorldModel

    wm = WorldModel.load(checkpoint)
    trained = set(split_episodes(6, wm.spec.split["val_fraction"], wm.spec.split["split_seed"])["train"].tolist())
    assert held_out_episodes(wm, reacher_file)[0] == sorted(set(range(6)) - trained)  # the training file: its own split
    again = record(tmp_path / "again.h5", episodes=8)  # the training file's 6 episodes recorded again, and 2 more
    assert episode_fingerprints(again)[:6] == episode_fingerprints(reacher_file)
    episodes, which = held_out_episodes(wm, again)
    assert episodes == sorted(set(range(8)) - trained) and f"({len(trained)} the model trained on left out)" in which
    wm.provenance["dataset"]["train_episodes"] = episode_fingerprints(again)
    with pytest.raises(ValueError, match="all 8 episodes of .* are episodes the model trained on"):
        held_out_episodes(wm, again)
