"""One denoising step for training and imagination (worldmodel/denoising.py): for the same window
the trainer's loss and the world model's step hand the denoiser the same conditioning."""

import numpy as np
import torch

from worldmodel.data import RolloutReader
from worldmodel.diffusion import EDM
from worldmodel.training.losses import WindowLossConfig, window_losses
from worldmodel.world_model import WorldModel


def test_training_and_imagination_condition_the_denoiser_alike(state_checkpoint, reacher_file):
    wm = WorldModel.load(state_checkpoint, bf16=False)
    k = wm.context
    assert wm.pose_maps is not None and wm.dynamics is not None, "the default recipe: state track and pose maps"
    with RolloutReader(reacher_file) as reader:
        frames = torch.from_numpy(reader.frames(0, 0, k + 1))[None]
        actions = torch.from_numpy(reader.steps("actions", 0, 0, k).astype(np.float32))[None]
        states = torch.from_numpy(reader.states(0, 0, k))[None]
    seen = []
    forward = type(wm.denoiser).forward

    def recording(self, x, c_noise, actions, outputs_from=0, **conditioning):
        seen.append({"actions": actions, **conditioning})
        return forward(self, x, c_noise, actions, outputs_from, **conditioning)

    type(wm.denoiser).forward = recording
    try:
        window = wm.window(frames[:, :k], actions[:, : k - 1], states)
        _, step = wm.step(window, actions[:, k - 1], torch.Generator().manual_seed(0))
        imagined = seen.pop()
        # the trainer's window: the same frames, actions and states (the imagined next state in place of a recorded one)
        qpos_qvel = torch.cat([states, step.state[:, None]], dim=1)
        nq = wm.dynamics.nq
        batch = {
            "frames": frames,
            "actions": actions,
            "rewards": torch.zeros(1, k),
            "terminated": torch.zeros(1, k, dtype=torch.bool),
            "qpos": qpos_qvel[..., :nq],
            "qvel": qpos_qvel[..., nq:],
        }
        batch["segments"] = wm.pose_maps.segments(batch["qpos"])  # as the data loader places them
        window_losses(
            wm.denoiser,
            wm.reward_head,
            EDM(),
            WindowLossConfig(k, 1),
            batch,
            torch.Generator().manual_seed(0),
            dynamics=wm.dynamics,
            pose_maps=wm.pose_maps,
        )
        trained = seen.pop()
    finally:
        type(wm.denoiser).forward = forward
    assert set(trained) == set(imagined) == {"actions", "states", "pose"}
    for key in trained:
        torch.testing.assert_close(trained[key].float(), imagined[key].float(), rtol=0, atol=0, msg=key)
