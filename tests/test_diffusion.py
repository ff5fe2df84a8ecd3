"""The diffusion math where the answer is known: Gaussian data has an exact denoiser."""

import pytest
import torch

from worldmodel.diffusion import EDM, SamplerConfig, cosine_sigmas, karras_sigmas, make_sigmas, sample

MEAN, STD = 0.3, 0.2  # per-dimension Gaussian "data"


def exact_denoiser(x, sigma):
    """E[x0 | x] for x0 ~ N(MEAN, STD^2) and x = x0 + sigma * noise."""
    return MEAN + STD**2 / (STD**2 + sigma**2) * (x - MEAN)


@pytest.mark.parametrize("method, steps", [("euler", 200), ("heun", 30), ("churn", 60)])
def test_samplers_reproduce_a_gaussian_data_distribution(method, steps):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(20000, generator=g, dtype=torch.float64)
    cfg = SamplerConfig(method=method, steps=steps, sigma_min=1e-3, sigma_max=40.0, churn=10.0)
    x = sample(exact_denoiser, noise, cfg, generator=g)
    assert x.mean().item() == pytest.approx(MEAN, abs=0.01)
    assert x.std().item() == pytest.approx(STD, rel=0.03)


def test_few_step_euler_is_deterministic_and_close():
    noise = torch.randn(5000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cfg = SamplerConfig(method="euler", steps=3, sigma_max=5.0)
    a = sample(exact_denoiser, noise, cfg)
    b = sample(exact_denoiser, noise, cfg)
    assert torch.equal(a, b)
    assert a.mean().item() == pytest.approx(MEAN, abs=0.02)


def test_schedules_decrease_from_max_to_min_then_zero():
    for sigmas in (karras_sigmas(5, 0.002, 5.0), cosine_sigmas(5, 0.002, 5.0), make_sigmas("karras", 3)):
        assert sigmas[-1] == 0 and (sigmas[:-1].diff() < 0).all()
    assert karras_sigmas(5, 0.002, 5.0)[0].item() == pytest.approx(5.0)
    assert cosine_sigmas(5, 0.002, 5.0)[-2].item() == pytest.approx(0.002, rel=1e-4)
    with pytest.raises(ValueError, match="Unknown sigma schedule"):
        make_sigmas("linear", 3)


def test_preconditioning_matches_the_edm_formulas():
    edm = EDM(sigma_data=0.5)
    sigma = torch.tensor([[0.1, 1.0, 10.0]])
    c_skip, c_out, c_in, c_noise = edm.scalings(sigma)
    s2 = sigma**2 + 0.25
    assert torch.allclose(c_skip, 0.25 / s2)
    assert torch.allclose(c_out, sigma * 0.5 / s2.sqrt())
    assert torch.allclose(c_in, 1 / s2.sqrt())
    assert torch.allclose(c_noise, sigma.log() / 4)
    # unit variance in and out: c_in^2 (sigma_data^2 + sigma^2) = 1
    assert torch.allclose(c_in**2 * s2, torch.ones_like(sigma))


def test_a_perfect_network_has_zero_loss_and_each_frame_keeps_its_sigma():
    """The ideal F for point-mass data x0 is (x0 - c_skip x) / c_out: loss 0 at any per-frame sigma."""
    edm = EDM()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 3, 4, 4, generator=g) * 2 - 1
    sigma = torch.tensor([[0.01, 0.5, 3.0], [0.002, 1.0, 20.0]])
    noise = torch.randn(x0.shape, generator=g)

    def oracle(x_in, c_noise, outputs_from=0):
        s = (4 * c_noise).exp()
        c_skip, c_out, c_in, _ = edm.scalings(s)
        x_noisy = x_in / c_in[..., None, None, None]
        return (x0 - c_skip[..., None, None, None] * x_noisy) / c_out[..., None, None, None]

    mask = torch.tensor([[False, True, True], [True, True, False]])
    assert edm.loss(oracle, x0, sigma, mask, noise).item() == pytest.approx(0.0, abs=1e-8)
    denoised = edm.denoise(oracle, x0 + sigma[..., None, None, None] * noise, sigma)
    assert torch.allclose(denoised, x0, atol=1e-5)
    targets = edm.denoise(oracle, x0 + sigma[..., None, None, None] * noise, sigma, outputs_from=2)
    assert torch.equal(targets, denoised[:, 2:]), "the estimate of the frames from outputs_from on, alone"


def test_training_sigmas_are_log_normal_and_clipped():
    edm = EDM()
    s = edm.sample_sigma((100000,), generator=torch.Generator().manual_seed(0))
    assert s.min() >= 2e-3 and s.max() <= 20
    assert s.log().median().item() == pytest.approx(-0.4, abs=0.02)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.03)
