"""Training end to end on a tiny recording: export, load, imagine, resume, distributed, bad input."""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import record, run_tool, tiny_config
from worldmodel.checkpoint import CheckpointError, load_checkpoint
from worldmodel.data import RolloutReader
from worldmodel.training.trainer import TrainingError, train
from worldmodel.world_model import WorldModel

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return record(tmp_path_factory.mktemp("train") / "reacher.h5", episodes=8, episode_steps=10)


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    return train(tiny_config(small_data, run, model="spacetime", dynamics="none")), run


def test_export_is_self_contained_and_loads_as_data_only(trained, small_data):
    path, run = trained
    ckpt = torch.load(path, weights_only=True)
    spec = ckpt["spec"]
    assert spec["task"]["name"] == "reacher" and spec["frame_shape"] == [64, 64, 3]
    assert spec["task"]["episode_steps"] == 10, "the task as recorded, not the preset's 50 steps"
    assert spec["denoiser"]["architecture"] == "spacetime" and (spec["context"], spec["target"]) == (4, 1)
    assert ckpt["start_bank"]["frames"].shape == (4, 4, 64, 64, 3) and ckpt["start_bank"]["frames"].dtype == torch.uint8
    assert ckpt["provenance"]["steps"] == 6 and ckpt["provenance"]["dataset"]["episodes"] == 8
    assert ckpt["training_config"]["model"]["architecture"] == "spacetime"
    assert json.loads((run / "config.json").read_text())["steps"] == 6


def test_imagine_is_batched_deterministic_and_validated(trained):
    wm = WorldModel.load(trained[0], bf16=False)
    frames, actions, _ = wm.random_start(3, np.random.default_rng(0))
    plan = torch.zeros(3, 5, 2)
    a = wm.imagine(frames, actions, plan, generator=torch.Generator().manual_seed(1))
    b = wm.imagine(frames, actions, plan, generator=torch.Generator().manual_seed(1))
    assert a.frames.shape == (3, 5, 64, 64, 3) and a.frames.dtype == torch.uint8
    assert a.rewards.shape == a.termination_prob.shape == (3, 5)
    assert torch.equal(a.frames, b.frames)
    with pytest.raises(ValueError, match="context_frames must be"):
        wm.imagine(frames[:, :2], actions, plan)
    with pytest.raises(ValueError, match="NaN"):
        wm.imagine(frames, actions, torch.full((3, 5, 2), float("nan")))


def interrupted_run(small_data, run, monkeypatch, **overrides):
    """A run stopped (Ctrl-C) right after its step-3 state save."""
    from worldmodel.training import run_dir as run_files

    save_state = run_files.save_state

    def save_then_interrupt(accelerator, run_dir):
        save_state(accelerator, run_dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(run_files, "save_state", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(small_data, run, **overrides))
    monkeypatch.setattr(run_files, "save_state", save_state)
    return run


@pytest.mark.parametrize("crash", ["after the save", "between the renames of the save", "moved with its data"])
def test_resume_continues_exactly(small_data, tmp_path, monkeypatch, crash):
    straight = torch.load(train(tiny_config(small_data, tmp_path / "a", dynamics="none")), weights_only=True)
    run = interrupted_run(small_data, tmp_path / "b", monkeypatch, dynamics="none")
    data = small_data
    if crash == "between the renames of the save":  # only state.old/ is on disk
        (run / "state").rename(run / "state.old")
    if crash == "moved with its data":  # another folder, spelled with "./", and a copy of the data
        run = (run.rename(tmp_path / "moved")).parent / "." / "moved"
        data = Path(shutil.copy(small_data, tmp_path / "copy.h5"))
    resumed = torch.load(train(tiny_config(data, run, resume=True, dynamics="none")), weights_only=True)
    for key in straight["denoiser"]:
        assert torch.equal(straight["denoiser"][key], resumed["denoiser"][key]), key
    assert (run / "state").is_dir() and not (run / "state.old").exists()


def test_resume_keeps_the_state_track_and_continues(small_data, tmp_path, monkeypatch):
    """The state track is not trained again on resume; the denoiser continues where it stopped (to float
    rounding: the state track's layers leave the last bit of fp32 CPU kernels to memory layout)."""
    straight = torch.load(train(tiny_config(small_data, tmp_path / "a")), weights_only=True)
    run = interrupted_run(small_data, tmp_path / "b", monkeypatch)
    resumed = torch.load(train(tiny_config(small_data, run, resume=True)), weights_only=True)
    for key in straight["dynamics"]:
        assert torch.equal(straight["dynamics"][key], resumed["dynamics"][key]), key
    for key in straight["denoiser"]:
        torch.testing.assert_close(straight["denoiser"][key], resumed["denoiser"][key], rtol=1e-5, atol=1e-6, msg=key)


def test_resume_refuses_data_that_changed(small_data, tmp_path, monkeypatch):
    data = Path(shutil.copy(small_data, tmp_path / "data.h5"))
    run = interrupted_run(data, tmp_path / "run", monkeypatch)
    record(data, episodes=1, episode_steps=10, append=True, seed=5)
    with pytest.raises(TrainingError, match="data changed since the run started \\(8 episodes.*9 episodes"):
        train(tiny_config(data, run, resume=True))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("steps", 0, "steps must be a whole number >= 1, got 0"),
        ("steps", -3, "steps must be a whole number >= 1, got -3"),
        ("save_every", 0, "save_every must be a whole number >= 1, got 0"),
        ("batch_size", 2.5, "batch_size: Value '2.5' of type 'float' could not be converted to Integer"),
        ("log_every", "abc", "log_every: Value 'abc' of type 'str' could not be converted to Integer"),
        ("optim.lr", "fast", "optim.lr: Value 'fast' of type 'str' could not be converted to Float"),
        ("+stepz", 3, "stepz: Key 'stepz' not in 'TrainConfig'"),
    ],
)
def test_config_values_a_run_cannot_work_with_are_refused_before_anything_is_written(small_data, tmp_path, key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        train(tiny_config(small_data, tmp_path / "r", **{key: value}))
    assert not (tmp_path / "r").exists()


def test_tensorboard_logging_and_validation_videos(small_data, tmp_path):
    run = tmp_path / "tb"
    train(tiny_config(small_data, run, tensorboard=True, val_every=3, val_episodes=2, **{"val_horizons": "[1,3]"}))
    assert list(run.glob("tb/**/events.out.tfevents.*")), "TensorBoard event file"
    assert sorted(p.name for p in (run / "validation").iterdir()) == ["step0000003.mp4", "step0000006.mp4"]


def test_resume_with_another_config_is_refused(trained, small_data):
    with pytest.raises(TrainingError, match="config differs in \\['model'\\]"):
        train(tiny_config(small_data, trained[1], resume=True, model="spacetime", dynamics="none", **{"model.blocks": 2}))
    with pytest.raises(TrainingError, match="already holds a run"):
        train(tiny_config(small_data, trained[1], model="spacetime", dynamics="none"))


def test_data_that_does_not_match_the_config_is_refused(small_data, tmp_path):
    cfg = tiny_config(small_data, tmp_path / "r")
    for key, value, message in [
        ("frame_shape", [96, 96, 3], "frame_shape \\[64, 64, 3\\]"),
        ("action_shape", [7], "action_shape \\[2\\]"),
        ("task", "pusher", "task reacher"),
    ]:
        cfg["expect"] = {key: value}
        with pytest.raises(ValueError, match=message):
            train(cfg)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_state(small_data, tmp_path, monkeypatch):
    from worldmodel.training.losses import WindowLoss

    forward, calls = WindowLoss.forward, []

    def diverging(self, batch, generator=None, unroll=0):
        losses = forward(self, batch, generator, unroll)
        calls.append(1)
        return {**losses, "loss": losses["loss"] * float("nan")} if len(calls) > 4 else losses

    monkeypatch.setattr(WindowLoss, "forward", diverging)
    with pytest.raises(TrainingError, match="loss was not finite between steps 4 and 6.*resume=true"):
        train(tiny_config(small_data, tmp_path / "r"))
    progress = torch.load(tmp_path / "r/state/custom_checkpoint_1.pkl", weights_only=False)
    assert progress["step"] == 3, "the state saved at step 3 is kept"
    assert not (tmp_path / "r/model.pt").exists()


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="tools/train.py"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a DiffusionWorld checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'diffusionworld-checkpoint' marker"):
        load_checkpoint(tmp_path / "other.pt")

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "diffusionworld-checkpoint", "x": Payload()}, f)
    with pytest.raises(CheckpointError, match="refused") as refused:
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    assert "weights_only" not in str(refused.value), "never the advice to load with weights_only=False"
    data = record(tmp_path / "data.h5", episodes=1, episode_steps=3)
    with pytest.raises(CheckpointError, match="HDF5 file \\(rollout data goes in data="):
        load_checkpoint(data)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("nan", "denoiser weights .* are not finite"),
        ("missing", "denoiser weights do not fit the network"),
        ("empty_bank", "start bank .* is not N >= 1 real start contexts"),
        ("no_bank", "start bank .* is not N >= 1"),
    ],
)
def test_damaged_checkpoints_are_refused_at_load(trained, tmp_path, damage, message):
    ckpt = torch.load(trained[0], weights_only=True)
    if damage == "nan":
        first = next(iter(ckpt["denoiser"]))
        ckpt["denoiser"][first] = torch.full_like(ckpt["denoiser"][first], float("nan"))
    elif damage == "missing":
        ckpt["denoiser"].pop(next(iter(ckpt["denoiser"])))
    elif damage == "empty_bank":
        ckpt["start_bank"] = {k: v[:0] for k, v in ckpt["start_bank"].items()}
    else:
        ckpt["start_bank"] = {}
    torch.save(ckpt, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=message):
        WorldModel.load(tmp_path / "damaged.pt")


def test_checkpoints_of_another_format_or_spec_version_are_refused_with_a_way_out(trained, tmp_path):
    ckpt = torch.load(trained[0], weights_only=True)
    torch.save({**ckpt, "format_version": 1}, tmp_path / "v1.pt")
    with pytest.raises(CheckpointError, match="format_version 1; this code reads 2.*resume=true"):
        load_checkpoint(tmp_path / "v1.pt")
    torch.save({**ckpt, "spec": {**ckpt["spec"], "spec_version": 99}}, tmp_path / "spec99.pt")
    with pytest.raises(CheckpointError, match="model spec version 99"):
        WorldModel.load(tmp_path / "spec99.pt")
    spec = dict(ckpt["spec"])
    del spec["task"]
    torch.save({**ckpt, "spec": spec}, tmp_path / "no_task.pt")
    with pytest.raises(CheckpointError, match="model spec lacks \\['task'\\]"):
        load_checkpoint(tmp_path / "no_task.pt")
    # options measured worse and removed: their off value (what every earlier default model stored) loads, anything else is refused
    spec = {
        **ckpt["spec"],
        "edm": {**ckpt["spec"]["edm"], "residual_scale": 0.0},
        "denoiser": {**ckpt["spec"]["denoiser"], "state_render_channels": 0},
    }
    torch.save({**ckpt, "spec": spec}, tmp_path / "old_defaults.pt")
    WorldModel.load(tmp_path / "old_defaults.pt")
    torch.save({**ckpt, "spec": {**spec, "edm": {**spec["edm"], "residual_scale": 2.0}}}, tmp_path / "residual.pt")
    with pytest.raises(CheckpointError, match="trained with edm.residual_scale, an option measured worse and removed"):
        load_checkpoint(tmp_path / "residual.pt")


def test_resume_re_exports_with_the_current_format(trained, small_data):
    """The way out the refusal names: resuming a finished run exports again, weights unchanged."""
    path, run = trained
    before = torch.load(path, weights_only=True)
    after = torch.load(train(tiny_config(small_data, run, resume=True, model="spacetime", dynamics="none")), weights_only=True)
    assert after["provenance"]["steps"] == before["provenance"]["steps"]
    assert all(torch.equal(before["denoiser"][k], after["denoiser"][k]) for k in before["denoiser"])


@pytest.mark.slow
def test_two_process_cpu_training_keeps_ranks_in_sync(small_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "tests/ddp_check.py"),
        str(small_data),
        str(run),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    digests = [(run / f"weights-digest-rank{rank}.txt").read_text() for rank in (0, 1)]
    assert digests[0] == digests[1], digests
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".pt") == ["model.pt", "state_dynamics.pt"]


@pytest.mark.slow
def test_a_short_training_beats_copying_the_last_frame(tmp_path):
    """~1 minute: a small framestack model (the default state track and pose maps) on 32x32 reacher
    data, held-out PSNR one and five steps ahead. Measured: 34.1 / 33.2 dB against copy-last's
    26.7 / 23.3 (without pose maps: 30.0 / 24.1)."""
    from worldmodel.data.windows import RolloutWindows
    from worldmodel.evaluation.fidelity import rollout_fidelity

    data = record(tmp_path / "learn.h5", policy="mixture", episodes=60, episode_steps=30, frame_size=(32, 32))
    cfg = tiny_config(
        data,
        tmp_path / "run",
        steps=400,
        batch_size=16,
        mixed_precision="auto",
        **{
            "model": "framestack",
            "model.channels": "[32,32,32]",
            "model.cond_dim": 64,
            "optim.lr": 1e-3,
            "optim.warmup_steps": 20,
            "window.val_fraction": 0.1,
            "save_every": 1000,
            "dynamics.steps": 1000,
            "dynamics.horizon": 12,
            "dynamics.batch_size": 64,
        },
    )  # frames follow the state: train it
    wm = WorldModel.load(train(cfg))
    held_out = RolloutWindows(data, split="val", val_fraction=0.1).episodes
    result = rollout_fidelity(wm, data, held_out, horizons=[1, 5], max_episodes=6)
    assert result["psnr"][1] > result["copy_last_psnr"][1] + 3.0, result
    assert result["psnr"][5] > result["copy_last_psnr"][5] + 3.0, result

    # 1,000 imagined steps under random actions stay inside the real frames' statistics: no drift to
    # a blank, saturated or noisy picture (the real frames' per-frame mean, std and pixel-to-pixel
    # roughness bound the imagined ones).
    with RolloutReader(data) as reader:
        real = torch.from_numpy(np.concatenate([reader.frames(e) for e in held_out])).float()
    frames, actions, states = wm.random_start(1, np.random.default_rng(0))
    plan = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (1, 1000, 2)).astype(np.float32))
    long = wm.imagine(frames, actions, plan, generator=torch.Generator().manual_seed(0), context_states=states).frames[0].float()

    def stats(x):  # per frame: mean, std, mean |horizontal neighbour difference|
        return x.mean((1, 2, 3)), x.std((1, 2, 3)), (x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2, 3))

    for name, r, i in zip(("mean", "std", "roughness"), stats(real), stats(long)):
        lo, hi = r.min().item(), r.max().item()
        slack = 0.5 * (hi - lo) + 0.1 * abs(hi)  # a blank or noisy frame is far outside; a slightly darker one is not
        assert lo - slack <= i.min().item() and i.max().item() <= hi + slack, (name, lo, hi, i.min().item(), i.max().item())


def test_rollout_training_replaces_context_with_the_models_own_frames(trained):
    """unrolled_frames: frames K..K+U-1 become samples of the model (on the uint8 grid), the rest stay real."""
    from worldmodel.diffusion import EDM
    from worldmodel.training.losses import WindowLossConfig, unrolled_frames

    wm = WorldModel.load(trained[0], bf16=False)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 4 + 2 + 1, 3, 64, 64, generator=g) * 2 - 1
    actions = torch.rand(2, 6, 2, generator=g) * 2 - 1
    cfg = WindowLossConfig(4, 1)
    out = unrolled_frames(wm.denoiser, EDM(), cfg, frames, actions, 2, torch.Generator().manual_seed(1))
    again = unrolled_frames(wm.denoiser, EDM(), cfg, frames, actions, 2, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert torch.equal(out[:, :4], frames[:, :4]) and torch.equal(out[:, 6:], frames[:, 6:])
    assert (out[:, 4:6] - frames[:, 4:6]).abs().mean() > 0.05
    assert torch.allclose(((out[:, 4:6] + 1) * 127.5), ((out[:, 4:6] + 1) * 127.5).round(), atol=1e-4)


def test_unroll_length_follows_its_curriculum():
    from worldmodel.training.trainer import unroll_length

    g = torch.Generator().manual_seed(0)
    assert {unroll_length(s, 0, 10, g) for s in range(50)} == {0}
    assert {unroll_length(0, 4, 100, g) for _ in range(50)} == {0}
    assert {unroll_length(50, 4, 100, g) for _ in range(200)} == {0, 1, 2}
    assert {unroll_length(500, 4, 100, g) for _ in range(200)} == {0, 1, 2, 3, 4}


def test_rollout_training_trains_and_exports_a_one_frame_model(small_data, tmp_path):
    path = train(tiny_config(small_data, tmp_path / "sf", steps=4, **{"rollout.max_unroll": 3, "rollout.curriculum_steps": 2}))
    wm = WorldModel.load(path, bf16=False)
    assert wm.spec.target == 1 and wm.spec.context == 4


@pytest.mark.parametrize("recipe", ["reacher_cpu", "reacher_gpu"])
def test_experiment_recipes_compose_onto_the_train_config(recipe):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        base = compose("train", overrides=["data=d.h5", "run_dir=r"])
        cfg = compose("train", overrides=[f"+experiment={recipe}", "data=d.h5", "run_dir=r"])
    assert set(cfg) == set(base), "a recipe sets known keys only"
    assert cfg.window.context == 12 and cfg.steps * cfg.batch_size >= 12_800


def test_train_tool_names_missing_values_and_keeps_its_progress_bar_clean(small_data, tmp_path):
    missing = run_tool("train.py", check=False)
    assert missing.returncode != 0 and "Missing mandatory value: data" in missing.stderr
    assert not Path("???").exists()
    ran = run_tool(
        "train.py",
        f"data={small_data}",
        f"run_dir={tmp_path / 'r'}",
        "steps=2",
        "save_every=1",
        "batch_size=2",
        "model.channels=[8,8]",
        "model.blocks=1",
        "start_bank_size=2",
        "val_every=0",
        "mixed_precision=no",
        "window.context=4",
        "dynamics.steps=5",
    )
    assert "saved in" not in ran.stdout + ran.stderr, "accelerate's per-file save lines stay out of the training output"


class StillWorld(torch.nn.Module):
    """The ideal denoiser of a world where the target is 0 whatever the noise: F = (0 - c_skip x) / c_out."""

    def __init__(self, edm):
        super().__init__()
        self.edm = edm

    def forward(self, x_in, c_noise, actions, outputs_from=0):
        c_skip, c_out, c_in, _ = self.edm.scalings((4 * c_noise).exp())
        c_skip, c_out, c_in = (c[..., None, None, None] for c in (c_skip, c_out, c_in))
        return -c_skip * (x_in / c_in) / c_out


def test_compile_setting_is_on_for_cuda_only_by_default_and_checked():
    from worldmodel.compiling import compile_enabled

    assert compile_enabled("auto", "cuda") and not compile_enabled("auto", "cpu")
    assert compile_enabled(True, "cpu") and not compile_enabled(False, "cuda")
    with pytest.raises(ValueError, match="true, false or auto"):
        compile_enabled("yes", "cpu")


@pytest.mark.slow
def test_a_compiled_run_trains_exports_plain_weights_and_reports_its_speed(small_data, tmp_path):
    run = tmp_path / "compiled"
    path = train(tiny_config(small_data, run, compile=True, steps=3, dynamics="none"))
    speed = json.loads((run / "speed.json").read_text())
    assert speed["steps"] == 3 and speed["samples_per_s"] > 0 and speed["first_step_s"] > 0
    ckpt = load_checkpoint(path)
    assert not any("_orig_mod" in k for k in ckpt["denoiser"]), "compiling must not rename the exported weights"
    WorldModel.load(path)  # the eager network takes them as they are


def test_the_state_track_follows_the_run_length(reacher_file, tmp_path, fresh_accelerate_state, caplog):
    """dynamics.steps=auto (the default): a short run is short in the state-track stage too."""
    import logging

    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        assert compose("train", overrides=["data=x"]).dynamics.steps == "auto"
    with caplog.at_level(logging.INFO, logger="worldmodel"):
        train(tiny_config(reacher_file, tmp_path / "auto", steps=3, save_every=3, **{"dynamics.steps": "auto"}))
    assert "state track: 15 steps (dynamics.steps=auto) before the denoiser's 3" in caplog.text
    with pytest.raises(ValueError, match=r"dynamics.steps \(or auto: 5 x steps\) must be a whole number >= 1, got 'many'"):
        train(tiny_config(reacher_file, tmp_path / "bad", **{"dynamics.steps": "many"}))
