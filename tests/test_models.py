import pytest
import torch

from worldmodel.models import RewardTerminationHead, build_denoiser

BOX = {"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0]}
SMALL = dict(channels=(16, 32), blocks=1, cond_dim=32)


def randomized(model, seed=0):
    """Zero-initialised output layers make every output 0; give all weights random values to test wiring."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def window(b=2, t=5, a=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, 16, 16, generator=g), torch.randn(b, t, generator=g), torch.rand(b, t - 1, a, generator=g) * 2 - 1


def test_spacetime_output_of_a_frame_never_depends_on_later_frames():
    model = randomized(build_denoiser("spacetime", BOX, context=3, target=2, **SMALL))
    x, c_noise, actions = window()
    out = model(x, c_noise, actions)
    assert out.shape == x.shape
    x2, c2, a2 = x.clone(), c_noise.clone(), actions.clone()
    x2[:, 3:] += 1.0
    c2[:, 3:] -= 1.0
    a2[:, 3:] = -a2[:, 3:]  # action 3 leads to frame 4
    out2 = model(x2, c2, a2)
    assert torch.allclose(out[:, :3], out2[:, :3], atol=1e-5), "frames 0-2 must not see frames 3-4"
    assert not torch.allclose(out[:, 3:], out2[:, 3:], atol=1e-3)


@pytest.mark.parametrize("architecture", ["spacetime", "framestack"])
def test_actions_and_context_condition_the_prediction(architecture):
    model = randomized(build_denoiser(architecture, BOX, context=4, target=1, **SMALL))
    x, c_noise, actions = window()
    out = model(x, c_noise, actions)
    assert out.shape == x.shape
    other_action = actions.clone()
    other_action[:, -1] = -other_action[:, -1]
    assert not torch.allclose(out[:, -1], model(x, c_noise, other_action)[:, -1], atol=1e-4)
    other_context = x.clone()
    other_context[:, 0] += 1.0
    assert not torch.allclose(out[:, -1], model(other_context, c_noise, actions)[:, -1], atol=1e-4)


def test_framestack_predicts_only_the_last_frame():
    model = randomized(build_denoiser("framestack", BOX, context=4, target=1, **SMALL))
    x, c_noise, actions = window()
    out = model(x, c_noise, actions)
    assert (out[:, :-1] == 0).all()
    with pytest.raises(ValueError, match="window of 4"):
        model(x[:, 1:], c_noise[:, 1:], actions[:, 1:])
    with pytest.raises(ValueError, match="target=1"):
        build_denoiser("framestack", BOX, context=4, target=2)


def test_framestack_patches_work_at_a_lower_resolution_and_keep_every_pixel():
    model = randomized(build_denoiser("framestack", BOX, context=4, target=1, patch=4, **SMALL))
    x, c_noise, actions = window()
    out = model(x, c_noise, actions)
    assert out.shape == x.shape and (out[:, :-1] == 0).all()
    # Each output pixel depends on the input: a change in one pixel of one context frame reaches the whole block it sits in.
    nudged = x.clone()
    nudged[:, 0, :, 5, 9] += 1.0
    changed = (model(nudged, c_noise, actions)[:, -1] - out[:, -1]).abs().amax(dim=(0, 1)) > 1e-5
    assert changed[4:8, 8:12].all(), "the 4x4 block holding pixel (5, 9)"
    with pytest.raises(ValueError, match="multiples of 8"):
        model(x[..., :12, :12], c_noise, actions)
    with pytest.raises(ValueError, match="patch must be >= 1"):
        build_denoiser("framestack", BOX, context=4, target=1, patch=0)


def test_framestack_blocks_per_level():
    """blocks: one count for every level, or one per level (the decoder has one more at each)."""
    small = dict(SMALL, channels=(16, 32, 32))
    per_level = build_denoiser("framestack", BOX, context=4, target=1, **dict(small, blocks=[1, 2, 2]))
    assert [b.conv1.out_channels for b in per_level.down if hasattr(b, "conv1")] == [16, 32, 32, 32, 32]
    assert [b.conv1.out_channels for b in per_level.up if hasattr(b, "conv1")] == [32, 32, 32, 32, 32, 32, 16, 16]
    x, c_noise, actions = window()
    assert randomized(per_level)(x, c_noise, actions).shape == x.shape
    uniform = build_denoiser("framestack", BOX, context=4, target=1, **dict(small, blocks=2))
    assert sum(1 for b in uniform.down if hasattr(b, "conv1")) == 6
    with pytest.raises(ValueError, match="one per level \\(3 levels\\), got \\[1, 2\\]"):
        build_denoiser("framestack", BOX, context=4, target=1, **dict(small, blocks=[1, 2]))


def test_unknown_architecture_and_action_space_are_refused():
    with pytest.raises(ValueError, match="Unknown denoiser architecture 'dit'. Known: \\['framestack', 'spacetime'\\]"):
        build_denoiser("dit", BOX, context=2, target=1)
    with pytest.raises(ValueError, match="Unsupported action space 'discrete'"):
        build_denoiser("spacetime", {"type": "discrete", "n": 3}, context=2, target=1, **SMALL)


@pytest.mark.parametrize("architecture", ["spacetime", "framestack"])
def test_gradient_checkpointing_gives_the_same_gradients(architecture):
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        model = build_denoiser(architecture, BOX, context=2, target=1, gradient_checkpointing=flag, **SMALL)
        randomized(model).train()
        x, c_noise, actions = window(t=3)
        model(x, c_noise, actions).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_reward_head_shapes_and_loss():
    head = RewardTerminationHead(BOX, channels=8, dim=32)
    frames = torch.rand(2, 5, 3, 64, 64) * 2 - 1
    actions = torch.rand(2, 4, 2) * 2 - 1
    reward, logit, success = head(frames, actions)
    assert reward.shape == logit.shape == (2, 4) and success is None
    losses = head.loss(frames, actions, torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.bool))
    assert set(losses) == {"reward", "termination"} and all(v.ndim == 0 for v in losses.values())
    head = RewardTerminationHead(BOX, channels=8, dim=32, success=True)
    assert head(frames, actions)[2].shape == (2, 4)
    flags = torch.zeros(2, 4, dtype=torch.bool)
    assert set(head.loss(frames, actions, torch.zeros(2, 4), flags, success=flags)) == {"reward", "termination", "success"}


def test_spacetime_skips_decoding_context_frames_without_changing_targets():
    model = randomized(build_denoiser("spacetime", BOX, context=3, target=2, **SMALL))
    x, c_noise, actions = window()
    full = model(x, c_noise, actions)
    targets_only = model(x, c_noise, actions, outputs_from=3)
    assert torch.allclose(full[:, 3:], targets_only[:, 3:], atol=1e-5)
    assert (targets_only[:, :3] == 0).all()


def test_temporal_attention_matches_sdpa_and_runs_at_a_large_batch():
    """The direct T x T attention equals the fused kernel, at the sequence count that broke CUDA's
    kernels (B*H*W = 131,072 at batch 64, 64x64: one sequence per pixel)."""
    import torch.nn.functional as F

    from worldmodel.models.blocks import causal_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(64, 2, 5, 32, generator=g) for _ in range(3))
    assert torch.allclose(causal_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
    q, k, v = (torch.randn(131_072, 2, 5, 8, generator=g, dtype=torch.bfloat16) for _ in range(3))
    out = causal_attention(q, k, v)
    assert out.shape == q.shape and torch.isfinite(out).all()
    # Causal: the first position sees only itself.
    assert torch.allclose(out[:, :, 0].float(), v[:, :, 0].float(), atol=1e-2)


@pytest.mark.parametrize("architecture", ["spacetime", "framestack"])
def test_bf16_convolutions_give_what_autocast_gives_and_conditioning_stays_fp32(architecture):
    """WorldModel.load keeps a bf16 model's convolutions in bf16 (autocast would round them on every
    call); the conditioning path runs in fp32 under autocast (its weights are never recast)."""
    from worldmodel.compiling import convolutions_to_bf16

    model = randomized(build_denoiser(architecture, BOX, context=4, target=1, **SMALL))
    x, c_noise, actions = window()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    projections = []
    model.modulation.register_forward_hook(lambda module, args, out: projections.append(out.dtype))
    with torch.no_grad(), autocast:
        before = model(x, c_noise, actions)
        convolutions_to_bf16(model)
        after = model(x, c_noise, actions)
    assert all(m.weight.dtype == torch.bfloat16 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(before, after)
    assert projections == [torch.float32, torch.float32]


@pytest.mark.parametrize(
    "batch, size, channels_last", [(1, 32, False), (3, 32, False), (1, 32, True), (3, 32, True), (3, 8, True), (1, 8, True)]
)
def test_adaptive_group_norm_is_group_norm_then_each_samples_affine(batch, size, channels_last):
    """Whichever path the layout and map size pick (folded into one GroupNorm, through the contiguous
    layout on small channels-last maps, or norm then affine), the result is the textbook one, in the
    input's memory format."""
    import torch.nn.functional as F

    from worldmodel.models.blocks import AdaGroupNorm

    g = torch.Generator().manual_seed(0)
    norm = AdaGroupNorm(48)
    x, modulation = torch.randn(batch, 48, size, size, generator=g) * 3 + 1, torch.randn(batch, 96, generator=g) * 0.3
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    scale, shift = modulation.chunk(2, dim=1)
    expected = F.group_norm(x, norm.norm.num_groups) * (1 + scale[..., None, None]) + shift[..., None, None]
    out = norm(x, modulation)
    assert torch.allclose(out, expected, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("architecture", ["spacetime", "framestack"])
def test_state_dicts_with_one_projection_per_norm_still_load(architecture):
    """Checkpoints written before the norms' projections became one `Modulation` (each res-block's
    `norm1.proj` and `norm2.proj`) load into the same network, outputs unchanged."""
    model = randomized(build_denoiser(architecture, BOX, context=4, target=1, **SMALL))
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("modulation.")}
    blocks = [(name, m) for name, m in model.named_modules() if hasattr(m, "columns")]
    for name, block in blocks:
        w, b = model.modulation.weight[:, block.columns].t(), model.modulation.bias[block.columns]
        for norm, (w_i, b_i) in zip(("norm1", "norm2"), zip(w.split(block.modulation_sizes), b.split(block.modulation_sizes))):
            old[f"{name}.{norm}.proj.weight"], old[f"{name}.{norm}.proj.bias"] = w_i.clone(), b_i.clone()
    assert len(blocks) > 2
    loaded = build_denoiser(architecture, BOX, context=4, target=1, **SMALL).eval()
    loaded.load_state_dict(old)
    x, c_noise, actions = window()
    with torch.no_grad():
        assert torch.equal(loaded(x, c_noise, actions), model(x, c_noise, actions))
