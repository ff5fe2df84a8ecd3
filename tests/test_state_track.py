"""The state track (dynamics=state_mlp): a learned simulator state that imagined frames are drawn
from. Its dynamics learns, the model exports and imagines with it, and every consumer (env,
vector env, evaluation, planning) gives it the states it needs or says that they are missing."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from conftest import SMALL_SEARCH, run_tool
from envs.diffusion_world import DiffusionWorldEnv
from worldmodel.checkpoint import load_checkpoint
from worldmodel.data.reader import RolloutReader
from worldmodel.data.stats import action_space_of, state_stats
from worldmodel.models import build_networks
from worldmodel.models.state_dynamics import StateDynamics
from worldmodel.spec import ModelSpec
from worldmodel.training.dynamics import load_transitions, train_dynamics
from worldmodel.world_model import WorldModel


def test_state_dynamics_learns_the_arm_and_beats_a_standing_state(reacher_file):
    with RolloutReader(reacher_file) as reader:
        meta, episodes = reader.metadata, list(range(reader.num_episodes))
    stats = state_stats(reacher_file)
    assert len(stats["delta_std"]) == meta["nq"] + meta["nv"] == 8
    dynamics = StateDynamics(action_space_of(meta), meta["nq"], meta["nv"], hidden=64)
    dynamics.set_statistics(stats["mean"], stats["std"], stats["delta_std"])
    train_dynamics(dynamics, reacher_file, episodes, steps=300, batch_size=32, horizon=8, lr=3e-3, seed=0, progress=False)
    states, actions = (
        torch.from_numpy(np.stack([x[:9] if len(x) > 8 else x for x in xs])) for xs in load_transitions(reacher_file, episodes)
    )
    with torch.no_grad():
        predicted = dynamics.rollout(states[:, 0], actions[:, :8])
    joints = slice(0, 2)  # the arm's two hinge angles (the target's slide joints never move)
    error = (predicted[..., joints] - states[:, 1:, joints]).abs().mean()
    standing = (states[:, :1, joints] - states[:, 1:, joints]).abs().mean()
    assert error < 0.5 * standing, (float(error), float(standing))


def test_rolled_out_state_stops_at_the_joint_limits():
    """Reacher's elbow is limited to [-3, 3] rad (widened to what data showed), its base and the
    state's velocities are free: a step that would run past the limit stops on it."""
    from worldmodel.pose import qpos_limits, task_model

    low, high = qpos_limits(task_model({"env_id": "Reacher-v5"}), [-9.0, -3.1, -0.1, -0.1], [9.0, 3.05, 0.1, 0.1])
    np.testing.assert_allclose(low, [-np.inf, -3.1, -0.27, -0.27], atol=1e-6)
    np.testing.assert_allclose(high, [np.inf, 3.05, 0.27, 0.27], atol=1e-6)
    dynamics = StateDynamics({"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0]}, 4, 4, hidden=8, joint_limits=True)
    dynamics.set_limits(low, high)
    torch.nn.init.constant_(dynamics.body[-1].bias, 1.0)  # every coordinate moves up by one delta_std per step
    dynamics.delta_std.fill_(0.5)
    state = torch.tensor([[10.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    with torch.no_grad():
        rolled = dynamics.rollout(state, torch.zeros(1, 3, 2))[0]
    np.testing.assert_allclose(rolled[:, 0], [10.5, 11.0, 11.5])  # free: keeps turning
    np.testing.assert_allclose(rolled[:, 1], [3.05, 3.05, 3.05])  # stops at the elbow's limit
    np.testing.assert_allclose(rolled[:, 4], [0.5, 1.0, 1.5])  # velocities are not clamped


@pytest.mark.parametrize("architecture", ["framestack", "spacetime"])
def test_denoisers_draw_what_the_state_says_and_require_it(architecture):
    space = {"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    denoiser, _ = build_networks(
        {"architecture": architecture, "channels": [8, 8], "blocks": 1, "cond_dim": 16, "state_dim": 5},
        {"channels": 8},
        space,
        2,
        1,
    )
    for weight in denoiser.parameters():  # zero-initialised outputs (head, each block's last conv) would hide any dependence
        if weight.ndim > 1 and not weight.any():
            torch.nn.init.normal_(weight, std=0.1)
    x, c_noise, actions = torch.randn(2, 3, 3, 16, 16), torch.zeros(2, 3), torch.zeros(2, 2, 2)
    a = denoiser(x, c_noise, actions, outputs_from=2, states=torch.zeros(2, 3, 5))
    b = denoiser(x, c_noise, actions, outputs_from=2, states=torch.ones(2, 3, 5))
    assert not torch.allclose(a[:, -1], b[:, -1])
    with pytest.raises(ValueError, match="states must be given"):
        denoiser(x, c_noise, actions, outputs_from=2)


def test_a_state_track_model_imagines_its_states_and_needs_a_start_state(state_checkpoint):
    saved = load_checkpoint(state_checkpoint)
    assert saved["spec"].dynamics == {"nq": 4, "nv": 4, "hidden": 256, "layers": 3, "joint_limits": True}
    assert saved["spec"].denoiser["state_dim"] == 12
    assert (
        saved["dynamics"]["qpos_high"][1] >= 3.0 and saved["dynamics"]["qpos_high"][0] == torch.finfo(torch.float32).max
    )  # elbow; free base
    assert saved["start_bank"]["states"].shape == (8, 4, 8)
    wm = WorldModel.load(state_checkpoint, bf16=False)
    frames, actions, states = wm.random_start(2, np.random.default_rng(0))
    plan = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (2, 5, 2)).astype(np.float32))
    out = wm.imagine(frames, actions, plan, torch.Generator().manual_seed(0), context_states=states)
    with torch.no_grad():
        assert torch.equal(out.states, wm.dynamics.rollout(states[:, -1], plan)), "the imagined state is the dynamics' rollout"
    again = wm.imagine(frames, actions, plan, torch.Generator().manual_seed(0), context_states=states)
    assert torch.equal(out.frames, again.frames)
    with pytest.raises(ValueError, match=r"give context_states \(2, 4, 8\)"):
        wm.imagine(frames, actions, plan)
    with pytest.raises(ValueError, match="context_states must be finite"):
        wm.imagine(frames, actions, plan, context_states=torch.full((2, 4, 8), float("nan")))


def test_models_without_a_state_track_still_load(checkpoint):
    spec = load_checkpoint(checkpoint)["spec"].to_dict()
    del spec["dynamics"]  # as written before the state track existed
    assert not ModelSpec.from_dict(spec).has_state


def test_state_track_env_passes_the_checker_reports_its_state_and_starts_from_given_states(state_checkpoint):
    env = gym.make("DiffusionWorld-v0", checkpoint=str(state_checkpoint), bf16=False)
    check_env(env.unwrapped)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["state"].shape == (8,) and info["state"].dtype == np.float32
    real = envs.make_task_env("reacher")
    frame, info = real.reset(seed=0)
    frames, actions, states = [frame], [], [np.concatenate([info["qpos"], info["qvel"]])]
    for _ in range(3):
        actions.append(real.action_space.sample())
        frame, _, _, _, info = real.step(actions[-1])
        frames.append(frame)
        states.append(np.concatenate([info["qpos"], info["qvel"]]))
    real.close()
    options = {"context_frames": np.stack(frames), "context_actions": np.stack(actions)}
    with pytest.raises(ValueError, match="options needs 'context_states'"):
        env.reset(options=options)
    with pytest.raises(ValueError, match=r"context_states must be finite and of shape \(1, 4, 8\)"):
        env.reset(options=options | {"context_states": np.stack(states)[:2]})
    obs, _ = env.reset(options=options | {"context_states": np.stack(states)})
    assert np.array_equal(obs, frames[-1])
    env.close()


def test_state_track_vector_env_matches_single_envs(state_checkpoint):
    """One step of N batched worlds = N single envs (the batched state MLP may differ in the last bit)."""
    n = 2
    actions = np.random.default_rng(0).uniform(-1, 1, (n, 2)).astype(np.float32)
    vec = gym.make_vec("DiffusionWorld-v0", num_envs=n, checkpoint=str(state_checkpoint), bf16=False)
    vec.reset(seed=5)
    obs, _, _, _, info = vec.step(actions)
    assert info["state"].shape == (n, 8) and info["_state"].all()
    for i in range(n):
        single = DiffusionWorldEnv(state_checkpoint, bf16=False)
        single.reset(seed=5 + i)
        single_obs, _, _, _, single_info = single.step(actions[i])
        np.testing.assert_allclose(single_info["state"], info["state"][i], rtol=1e-5, atol=1e-6)
        assert np.abs(single_obs.astype(int) - obs[i]).max() <= 1


def test_state_track_model_is_evaluated_and_plans_end_to_end(state_checkpoint, reacher_file, tmp_path):
    run_tool(
        "evaluate.py",
        f"checkpoint={state_checkpoint}",
        f"data={reacher_file}",
        f"out={tmp_path / 'eval'}",
        "horizons=[1,5]",
        "videos=1",
        "probe_steps=30",
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["position_cm"]["fingertip"]) == set(metrics["state_position_cm"]["fingertip"]) == {"1", "5"}
    assert "imagined state |" in metrics["table"]
    # frames against the task's rendering of the imagined state; the floor (recorded frames against their states'
    # rendering) is near exact: a frame shows its bodies one physics substep before its state
    assert min(metrics["render_floor_psnr"].values()) > 40 and 0 < metrics["render_ssim"]["1"] <= 1
    assert set(metrics["rendered_state_psnr"]) == {"1", "5"} and "Verdict: the frames follow the imagined state" in metrics["table"]
    run_tool(
        "evaluate.py",
        f"checkpoint={state_checkpoint}",
        f"data={reacher_file}",
        f"out={tmp_path / 'eval_no_probe'}",
        "horizons=[1,5]",
        "videos=1",
        "probe=false",
    )  # the imagined state's error needs no probe: kinematics only
    no_probe = json.loads((tmp_path / "eval_no_probe" / "metrics.json").read_text())
    assert no_probe["state_position_cm"] == metrics["state_position_cm"] and "position_cm" not in no_probe
    assert "| 5 | fingertip |" in no_probe["table"]
    run_tool(
        "evaluate.py",
        "mode=policies",
        f"checkpoint={state_checkpoint}",
        f"out={tmp_path / 'policies'}",
        "policy_episodes=2",
        "policy_episode_steps=8",
        "policies=[{name: expert}, {name: random}]",
    )
    for protocol in (["protocol=reward"], ["protocol=goal", f"goal.data={reacher_file}", "goal.offset=5", "goal.budget=4"]):
        run_tool(
            "plan.py",
            f"checkpoint={state_checkpoint}",
            f"out={tmp_path / protocol[0][9:]}",
            "episodes=1",
            *SMALL_SEARCH,
            "models=[world_model]",
            *protocol,
        )
        results = json.loads((tmp_path / protocol[0][9:] / "metrics.json").read_text())["results"]
        assert results["world_model"]["plan_seconds_per_step"] > 0
