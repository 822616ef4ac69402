"""Global pooling: avg/max match torch, GeM's formula and limits, learnable p, float32 under autocast."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidkit.models.pooling import POOLING, GeM, GlobalAvgPool, GlobalMaxPool, build_pooling


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _map(b: int = 2, c: int = 8, h: int = 16, w: int = 8) -> torch.Tensor:
    return torch.rand(b, c, h, w) * 2 + 0.05  # positive, as after a ReLU


def test_registry_and_errors() -> None:
    assert set(POOLING) == {"avg", "max", "gem"}
    assert isinstance(build_pooling("avg"), GlobalAvgPool)
    assert isinstance(build_pooling("MAX"), GlobalMaxPool)
    assert isinstance(build_pooling("gem", p=4.0, learnable=True), GeM)
    with pytest.raises(ValueError, match="avg, gem, max"):
        build_pooling("mean")
    with pytest.raises(ValueError, match="no options"):
        build_pooling("avg", p=3.0)
    with pytest.raises(ValueError, match=">= 1"):
        GeM(p=0.5)
    with pytest.raises(ValueError, match="eps"):
        GeM(eps=0.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        GeM()(torch.rand(2, 8))


@pytest.mark.parametrize("name", sorted(POOLING))
def test_output_is_flat_b_c(name: str) -> None:
    assert build_pooling(name)(_map(3, 5, 24, 8)).shape == (3, 5)


def test_avg_and_max_equal_torch() -> None:
    x = torch.randn(2, 8, 16, 8)
    torch.testing.assert_close(build_pooling("avg")(x), F.adaptive_avg_pool2d(x, 1).flatten(1))
    assert torch.equal(build_pooling("max")(x), F.adaptive_max_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5])
def test_gem_formula(p: float) -> None:
    x = _map()
    expected = x.double().clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1 / p)
    torch.testing.assert_close(GeM(p=p)(x).double(), expected, rtol=1e-5, atol=1e-6)


def test_gem_p1_is_average_pooling() -> None:
    x = _map()
    torch.testing.assert_close(GeM(p=1.0)(x), x.mean(dim=(2, 3)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [50.0, 500.0, 5000.0])
def test_gem_tends_to_max_pooling(p: float) -> None:
    """(1/N)^(1/p) · max ≤ GeM ≤ max, so GeM → max as p grows (no overflow even for huge p)."""
    x = _map()
    n = x.shape[2] * x.shape[3]
    mx = x.amax(dim=(2, 3))
    f = GeM(p=p)(x)
    assert torch.isfinite(f).all()
    assert (f <= mx * (1 + 1e-6)).all()
    assert (f >= mx * (1 / n) ** (1 / p) * (1 - 1e-6)).all()
    if p >= 500:
        torch.testing.assert_close(f, mx, rtol=0.01, atol=0.0)


def test_gem_clamps_at_eps() -> None:
    x = -torch.rand(2, 4, 4, 4)  # all negative: every value clamps to eps
    torch.testing.assert_close(GeM(eps=1e-6)(x), torch.full((2, 4), 1e-6))
    # on a 1×1 map GeM is just clamp(x, eps): never put it after a global pool
    y = torch.randn(2, 4, 1, 1)
    torch.testing.assert_close(GeM()(y), y.flatten(1).clamp(min=1e-6))


def test_fixed_p_is_not_a_parameter() -> None:
    gem = GeM(p=3.0)
    assert list(gem.parameters()) == [] and gem.no_weight_decay() == set()


def test_learnable_p_gets_a_gradient() -> None:
    gem = GeM(p=3.0, learnable=True)
    assert [name for name, _ in gem.named_parameters()] == ["p"]
    assert gem.no_weight_decay() == {"p"}
    x = _map().requires_grad_(True)
    gem(x).sum().backward()
    assert gem.p.grad is not None and torch.isfinite(gem.p.grad).all() and gem.p.grad.abs() > 0
    assert torch.isfinite(x.grad).all()


def test_learnable_p_is_clamped_at_1_but_keeps_its_gradient() -> None:
    gem = GeM(p=3.0, learnable=True)
    with torch.no_grad():
        gem.p.fill_(0.5)
    x = _map()
    out = gem(x)
    torch.testing.assert_close(out, x.mean(dim=(2, 3)), rtol=1e-6, atol=1e-6)  # effective p = 1
    out.sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs() > 0  # straight-through: not stuck below 1


def test_seed_gem_exponent_option() -> None:
    x = _map()
    seed = GeM(p=3.0, seed_gem_exponent=True)(x).double()
    expected = x.double().clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / (3 + 1e-6))
    torch.testing.assert_close(seed, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seed, GeM(p=3.0)(x).double(), rtol=1e-4, atol=0.0)  # numerically negligible


@pytest.mark.parametrize("learnable", [False, True])
def test_gem_gradcheck_float64(learnable: bool) -> None:
    gem = GeM(p=3.0, learnable=learnable).double()
    x = (torch.rand(2, 3, 4, 2, dtype=torch.float64) + 0.1).requires_grad_(True)
    inputs = (x, gem.p) if learnable else (x,)

    def fn(x: torch.Tensor, *p: torch.Tensor) -> torch.Tensor:
        return gem(x)

    assert torch.autograd.gradcheck(fn, inputs)


def test_fp16_input_does_not_overflow() -> None:
    x = torch.full((2, 4, 8, 4), 300.0, dtype=torch.float16)
    assert torch.isinf(x.pow(3)).all()  # what the float32 rule prevents: 300^3 > 65504
    out = GeM(p=3.0)(x)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), torch.full((2, 4), 300.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("learnable", [False, True])
def test_gem_under_autocast_is_finite(dtype: torch.dtype, learnable: bool) -> None:
    gem = GeM(p=3.0, learnable=learnable)
    x = torch.rand(2, 4, 8, 4) * 300 + 200
    x[0, 0] = 300.0
    with torch.autocast("cpu", dtype=dtype):
        out = gem(x.to(dtype))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 0].float(), torch.tensor(300.0), rtol=1e-2, atol=0.0)
    expected = x.to(dtype).double().pow(3).mean(dim=(2, 3)).pow(1 / 3)
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=0.0)
    if learnable:
        out.float().sum().backward()
        assert torch.isfinite(gem.p.grad).all()
