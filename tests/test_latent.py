"""Latent models (codec=conv): the frame codec, its training stage, and a latent world model served
like a pixel one (imagination, the env, gymnasium's checker, resume)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers DiffusionWorld-v0)
from conftest import tiny_config
from worldmodel.checkpoint import load_checkpoint
from worldmodel.models.codec import FrameCodec, latent_shape
from worldmodel.training.codec import reconstruction_psnr, train_codec
from worldmodel.training.trainer import train
from worldmodel.world_model import WorldModel

TINY_CODEC = {"codec.steps": 30, "codec.channels": "[8,16,16]", "codec.batch_size": 4}


def test_codec_shapes_and_clear_errors():
    codec = FrameCodec(4, [8, 16, 16])
    frames = torch.rand(3, 3, 64, 64) * 2 - 1
    latents = codec.encode(frames)
    assert latents.shape == (3, 4, 16, 16) and codec.decode(latents).shape == frames.shape
    assert latent_shape((64, 64, 3), {"latent_channels": 4, "channels": [8, 16, 16]}) == (16, 16, 4)
    with pytest.raises(ValueError, match="multiples of 8"):
        latent_shape((60, 64, 3), {"latent_channels": 4, "channels": [8, 8, 8, 8]})
    with pytest.raises(ValueError, match="two or more positive channel widths"):
        FrameCodec(4, [8])


def test_codec_training_learns_to_reconstruct_and_scales_its_latents(reacher_file):
    split = {"val_fraction": 0.25, "split_seed": 0}
    torch.manual_seed(0)
    codec = FrameCodec(4, [8, 16, 16])
    before = reconstruction_psnr(codec, reacher_file, split, torch.device("cpu"), torch.autocast("cpu", enabled=False))
    result = train_codec(codec, reacher_file, split, steps=150, batch_size=8, lr=3e-3, seed=0, sigma_data=0.5, bf16=False, progress=False)
    assert result["psnr"] > before + 5, (before, result)
    assert not any(p.requires_grad for p in codec.parameters()), "the codec is frozen for the denoiser's stage"
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (8, 3, 64, 64))).float() / 127.5 - 1
    assert 0.1 < float(codec.encode(frames).std()) < 2.0


def test_a_latent_world_model_trains_resumes_and_serves_as_an_env(reacher_file, tmp_path, fresh_accelerate_state):
    run = tmp_path / "latent"
    path = train(tiny_config(reacher_file, run, codec="conv", steps=4, save_every=2, **TINY_CODEC))
    ckpt = load_checkpoint(path)
    assert ckpt["spec"].codec == {"latent_channels": 8, "channels": [8, 16, 16]} and "codec" in ckpt
    assert ckpt["spec"].diffused_shape == (16, 16, 8) and ckpt["spec"].denoiser["image_channels"] == 8
    assert (run / "codec.pt").exists()

    wm = WorldModel.load(path, bf16=False)
    frames, actions, states = wm.random_start(2, np.random.default_rng(0))
    window = wm.window(frames, actions, states)
    assert window.latents.shape == (2, 4, 8, 16, 16)
    out = wm.imagine(frames, actions, torch.zeros(2, 3, 2), torch.Generator().manual_seed(0), states)
    again = wm.imagine(frames, actions, torch.zeros(2, 3, 2), torch.Generator().manual_seed(0), states)
    assert out.frames.shape == (2, 3, 64, 64, 3) and torch.equal(out.frames, again.frames)

    env = gym.make("DiffusionWorld-v0", checkpoint=str(path))
    check_env(env.unwrapped)
    vec = gym.make_vec("DiffusionWorld-v0", num_envs=3, checkpoint=str(path), max_episode_steps=2)
    vec.reset(seed=0)
    for _ in range(4):  # across autoresets: the reset rows' latents are replaced with their new start's
        obs, *_ = vec.step(vec.action_space.sample())
    assert obs.shape == (3, 64, 64, 3)

    # resume: the codec is loaded from the run, not trained again
    train(tiny_config(reacher_file, run, codec="conv", steps=6, save_every=2, resume=True, **TINY_CODEC))
    assert torch.equal(load_checkpoint(path)["codec"]["scale"], ckpt["codec"]["scale"])


def test_latent_models_refuse_what_they_do_not_support_yet(reacher_file, tmp_path):
    with pytest.raises(ValueError, match=r"does not support \['rollout.max_unroll'\]"):
        train(tiny_config(reacher_file, tmp_path / "r", codec="conv", **{"rollout.max_unroll": 2}, **TINY_CODEC))
