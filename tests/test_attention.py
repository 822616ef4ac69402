"""Attention modules: shapes, identity at initialisation, gradient flow and each module's defining formula."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from reidkit.models.attention import (
    ATTENTION,
    CAM,
    CBAM,
    FPB,
    PAM,
    PLR,
    GlobalContext,
    NonLocal,
    SqueezeExcitation,
    build_attention,
    make_divisible,
)

RESIDUAL = ["nonlocal", "gc", "pam", "cam", "fpb"]
NOT_IDENTITY = ["se", "cbam", "plr"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _randomise(module: nn.Module, std: float = 0.2) -> nn.Module:
    """Move every parameter away from its (possibly zero) init so that every path carries gradient."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std).add_(0.1)
    return module


def test_registry_names() -> None:
    assert set(ATTENTION) == {"cbam", "fpb", "gc", "nonlocal", "plr", "se", "pam", "cam"}
    assert isinstance(build_attention("global_context", 16), GlobalContext)
    assert isinstance(build_attention("NON_LOCAL", 16), NonLocal)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="cbam.*fpb.*gc.*nonlocal.*plr.*se"):
        build_attention("danet", 64)


@pytest.mark.parametrize("channels", [0, -4, 2.0, True])
def test_bad_channels(channels: object) -> None:
    with pytest.raises(ValueError, match="channels"):
        build_attention("se", channels)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_wrong_input_channels_is_a_clear_error(name: str) -> None:
    module = build_attention(name, 32)
    with pytest.raises(ValueError, match="32 channels"):
        module(torch.randn(1, 16, 4, 2))


@pytest.mark.parametrize("name", sorted(ATTENTION))
@pytest.mark.parametrize("channels,hw", [(64, (16, 8)), (64, (24, 8)), (256, (8, 4)), (2048, (4, 2))])
def test_shape_preserved(name: str, channels: int, hw: tuple[int, int]) -> None:
    module = build_attention(name, channels)
    x = torch.randn(2, channels, *hw)
    with torch.no_grad():
        y = module(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", RESIDUAL)
@pytest.mark.parametrize("train", [True, False])
def test_residual_modules_are_identity_at_init(name: str, train: bool) -> None:
    module = build_attention(name, 64).train(train)
    assert module.identity_at_init
    x = torch.randn(2, 64, 16, 8)
    with torch.no_grad():
        assert torch.equal(module(x), x)


@pytest.mark.parametrize("name,kwargs", [
    ("nonlocal", {"inter_channels": 1}),
    ("nonlocal", {"reduction": 16}),
    ("nonlocal", {"mode": "gaussian"}),
    ("pam", {"batchnorm": True}),
    ("cam", {"batchnorm": True}),
    ("fpb", {"pam_batchnorm": True, "cam_batchnorm": True}),
])
def test_residual_variants_are_identity_at_init(name: str, kwargs: dict) -> None:
    module = build_attention(name, 32, **kwargs)
    x = torch.randn(3, 32, 24, 8)
    with torch.no_grad():
        assert torch.equal(module(x), x)


@pytest.mark.parametrize("name", NOT_IDENTITY)
def test_gating_modules_change_the_input(name: str) -> None:
    module = build_attention(name, 64)
    assert not module.identity_at_init
    x = torch.randn(2, 64, 8, 4)
    with torch.no_grad():
        assert not torch.allclose(module(x), x)


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_gradient_reaches_every_parameter(name: str) -> None:
    module = _randomise(build_attention(name, 32)).train()
    x = torch.randn(2, 32, 8, 4, requires_grad=True)
    module(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in module.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,gate_params", [
    ("nonlocal", ["bn.weight", "bn.bias"]),
    ("gc", ["mlp_add.fc2.weight", "mlp_add.fc2.bias"]),
    ("pam", ["gamma"]),
    ("cam", ["gamma"]),
])
def test_zero_initialised_blocks_can_start_learning(name: str, gate_params: list[str]) -> None:
    """At init the output is x, but the zero-initialised gate still receives a gradient."""
    module = build_attention(name, 32).train()
    x = torch.randn(2, 32, 8, 4)
    target = torch.randn_like(x)
    (module(x) - target).square().mean().backward()
    params = dict(module.named_parameters())
    for pname in gate_params:
        assert params[pname].grad is not None and params[pname].grad.abs().sum() > 0, pname


# ---------------------------------------------------------------------------------------------------------- SE
@pytest.mark.parametrize("channels,hidden", [(24, 8), (64, 8), (176, 8), (256, 16), (2048, 128)])
def test_se_hidden_width(channels: int, hidden: int) -> None:
    assert SqueezeExcitation(channels).hidden == hidden
    assert make_divisible(channels / 16, 8, round_limit=0.0) == hidden


def test_make_divisible() -> None:
    assert make_divisible(4, 8) == 8 and make_divisible(16, 8) == 16 and make_divisible(20, 8) == 24
    assert make_divisible(11, 8) == 16  # rounding down to 8 would lose more than 10 %
    assert make_divisible(11, 8, round_limit=0.0) == 8


@pytest.mark.parametrize("channels", [176, 256])
def test_se_matches_timm(channels: int) -> None:
    timm_layers = pytest.importorskip("timm.layers")
    theirs = timm_layers.SEModule(channels, rd_ratio=1 / 16)
    ours = SqueezeExcitation(channels)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, channels, 8, 4)
    torch.testing.assert_close(ours(x), theirs(x))


def test_se_is_channelwise_scaling_by_a_gate_in_0_1() -> None:
    se = SqueezeExcitation(64)
    x = torch.randn(3, 64, 8, 4)
    g = se.gate(x)
    assert g.shape == (3, 64, 1, 1)
    assert ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(se(x), x * g)
    # formula: g = sigmoid(W2 relu(W1 mean(x) + b1) + b2)
    z = x.mean(dim=(2, 3))
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    expected = torch.sigmoid(torch.relu(z @ w1.t() + b1) @ w2.t() + b2)
    torch.testing.assert_close(g.flatten(1), expected)


# -------------------------------------------------------------------------------------------------------- CBAM
def test_cbam_is_channel_gate_then_spatial_gate() -> None:
    cbam = CBAM(64).eval()
    x = torch.randn(2, 64, 16, 8)
    cg = cbam.channel_gate(x)
    assert cg.shape == (2, 64, 1, 1) and ((cg > 0) & (cg < 1)).all()
    x1 = x * cg
    sg = cbam.spatial_gate(x1)
    assert sg.shape == (2, 1, 16, 8) and ((sg > 0) & (sg < 1)).all()
    torch.testing.assert_close(cbam(x), x1 * sg)
    # the other order gives something else
    assert not torch.allclose(cbam(x), (x * cbam.spatial_gate(x)) * cbam.channel_gate(x * cbam.spatial_gate(x)))


def test_cbam_widths_and_layout() -> None:
    cbam = CBAM(256)
    assert cbam.mlp[0].weight.shape == (16, 256, 1, 1) and cbam.mlp[0].bias is None
    assert cbam.spatial_conv.weight.shape == (1, 2, 7, 7) and cbam.spatial_conv.bias is None
    assert CBAM(8).mlp[0].out_channels == 1  # floor(8/16) = 0 is raised to 1


# ---------------------------------------------------------------------------------------------------- NonLocal
def test_nonlocal_widths() -> None:
    assert NonLocal(1024).inter_channels == 512  # C/2 by default
    assert NonLocal(512, reduction=16).inter_channels == 32  # seed recipe B
    one = build_attention("nonlocal", 1024, inter_channels=1)  # FastReID/AGW released code, only on request
    assert one.inter_channels == 1 and one.theta.weight.shape == (1, 1024, 1, 1)
    assert one.W.weight.shape == (1024, 1, 1, 1)


def _nonlocal_by_hand(nl: NonLocal, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    theta = nl.theta(x).flatten(2)
    phi = nl.phi(x).flatten(2)
    g = nl.g(x).flatten(2)
    f = torch.einsum("bci,bcj->bij", theta, phi)
    f = f.softmax(-1) if nl.mode == "gaussian" else f / (h * w)
    y = torch.einsum("bij,bcj->bci", f, g).reshape(b, -1, h, w)
    return x + nl.bn(nl.W(y))


@pytest.mark.parametrize("inter_channels", [1, 8, 64])  # C' < N and C' >= N take different product orders
@pytest.mark.parametrize("mode", ["dot", "gaussian"])
def test_nonlocal_formula(inter_channels: int, mode: str) -> None:
    nl = _randomise(NonLocal(32, inter_channels=inter_channels, mode=mode), std=0.1).eval()
    x = torch.randn(2, 32, 6, 4)  # N = 24
    torch.testing.assert_close(nl(x), _nonlocal_by_hand(nl, x), rtol=1e-4, atol=1e-5)


def test_nonlocal_attention_map() -> None:
    x = torch.randn(2, 16, 6, 4)
    dot = _randomise(NonLocal(16, mode="dot"), std=0.1)
    f = dot.attention_map(x)
    assert f.shape == (2, 24, 24)
    theta, phi = dot.theta(x).flatten(2), dot.phi(x).flatten(2)
    torch.testing.assert_close(f, theta.transpose(1, 2) @ phi / 24)
    gauss = _randomise(NonLocal(16, mode="gaussian"), std=0.1)
    a = gauss.attention_map(x)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 24))


def test_nonlocal_bad_options() -> None:
    with pytest.raises(ValueError, match="mode"):
        NonLocal(16, mode="concat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        NonLocal(16, reduction=0)


# ----------------------------------------------------------------------------------------------- GlobalContext
def test_gc_widths_and_fusions() -> None:
    assert GlobalContext(256).hidden == 16 and GlobalContext(384).hidden == 24  # recipe A widths
    add = GlobalContext(64)
    assert add.mlp_scale is None and add.identity_at_init
    assert torch.count_nonzero(add.mlp_add.fc2.weight) == 0 and torch.count_nonzero(add.mlp_add.fc2.bias) == 0
    scale = GlobalContext(64, fusion="scale")
    assert scale.mlp_add is None and not scale.identity_at_init
    both = GlobalContext(64, fusion="both")
    assert both.mlp_add is not None and both.mlp_scale is not None
    with pytest.raises(ValueError, match="fusion"):
        GlobalContext(64, fusion="mul")  # type: ignore[arg-type]


def _gc_by_hand(gc: GlobalContext, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    weights = gc.conv_attn(x).reshape(b, h * w).softmax(-1)  # (B, N)
    context = torch.einsum("bcn,bn->bc", x.reshape(b, c, -1), weights)[:, :, None, None]

    def transform(mlp: nn.Module) -> torch.Tensor:
        hidden = mlp.fc1(context).flatten(1)
        hidden = nn.functional.layer_norm(hidden, (hidden.shape[1],), mlp.norm.weight, mlp.norm.bias)
        return mlp.fc2(torch.relu(hidden)[:, :, None, None])

    out = x
    if gc.mlp_scale is not None:
        out = out * torch.sigmoid(transform(gc.mlp_scale))
    if gc.mlp_add is not None:
        out = out + transform(gc.mlp_add)
    return out


@pytest.mark.parametrize("fusion", ["add", "scale", "both"])
def test_gc_formula(fusion: str) -> None:
    gc = _randomise(GlobalContext(32, fusion=fusion), std=0.1)
    x = torch.randn(2, 32, 8, 4)
    torch.testing.assert_close(gc(x), _gc_by_hand(gc, x), rtol=1e-5, atol=1e-5)
    weights = gc.context_weights(x)
    assert weights.shape == (2, 1, 32)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1))


@pytest.mark.parametrize("channels", [256, 384])
def test_gc_scale_fusion_matches_timm_the_seeds_variant(channels: int) -> None:
    """The seed's GlobalContext is timm's (scale fusion): same state-dict keys and the same outputs."""
    timm_layers = pytest.importorskip("timm.layers")
    theirs = timm_layers.GlobalContext(channels, fuse_add=False, fuse_scale=True, rd_ratio=1 / 16)
    ours = GlobalContext(channels, fusion="scale")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, channels, 8, 4)
    torch.testing.assert_close(ours(x), theirs(x))


def test_gc_scale_fusion_gates_between_0_and_x() -> None:
    gc = GlobalContext(64, fusion="scale")
    x = torch.rand(2, 64, 8, 4) + 0.1
    y = gc(x)
    assert ((y > 0) & (y < x)).all()


# ------------------------------------------------------------------------------------------------- PAM / CAM
def test_pam_formula_and_attention_rows() -> None:
    pam = _randomise(PAM(32), std=0.1)
    x = torch.randn(2, 32, 6, 4)
    a = pam.attention_map(x)
    assert a.shape == (2, 24, 24)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 24))
    assert pam.query.out_channels == 4 and pam.value.out_channels == 32  # C/8 and C
    q, k, v = pam.query(x).flatten(2), pam.key(x).flatten(2), pam.value(x).flatten(2)
    attn = torch.einsum("bci,bcj->bij", q, k).softmax(-1)
    expected = x + pam.gamma * torch.einsum("bij,bcj->bci", attn, v).reshape(x.shape)
    torch.testing.assert_close(pam(x), expected)


def test_cam_formula() -> None:
    cam = CAM(16)
    with torch.no_grad():
        cam.gamma.fill_(0.7)
    x = torch.randn(2, 16, 6, 4)
    flat = x.flatten(2)
    energy = flat @ flat.transpose(1, 2)
    attn = (energy.amax(-1, keepdim=True) - energy).softmax(-1)
    torch.testing.assert_close(cam.attention_map(x), attn)
    torch.testing.assert_close(cam.attention_map(x).sum(-1), torch.ones(2, 16))
    torch.testing.assert_close(cam(x), x + 0.7 * (attn @ flat).reshape(x.shape))


def test_pam_cam_batchnorm_flag() -> None:
    assert PAM(16).bn is None and isinstance(PAM(16, batchnorm=True).bn, nn.BatchNorm2d)
    assert CAM(16).bn is None and isinstance(CAM(16, batchnorm=True).bn, nn.BatchNorm2d)


def test_fpb_is_cam_after_pam() -> None:
    fpb = _randomise(FPB(16), std=0.1)
    assert fpb.pam.bn is None and fpb.cam.bn is None
    x = torch.randn(2, 16, 6, 4)
    torch.testing.assert_close(fpb(x), fpb.cam(fpb.pam(x)))
    assert not torch.allclose(fpb(x), fpb.pam(fpb.cam(x)))


def test_plr_is_se_after_pam_with_bn() -> None:
    plr = _randomise(PLR(64), std=0.1).eval()
    assert isinstance(plr.pam.bn, nn.BatchNorm2d) and plr.se.hidden == 8
    x = torch.randn(2, 64, 6, 4)
    torch.testing.assert_close(plr(x), plr.se(plr.pam(x)))


# --------------------------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_autocast_large_activations_stay_finite(name: str, dtype: torch.dtype) -> None:
    """Affinities over hundreds of channels overflow fp16; they are computed in float32."""
    module = build_attention(name, 256).eval()
    with torch.no_grad():  # open the residual gates so the attention path matters
        for pname, p in module.named_parameters():
            if pname.endswith("gamma") or pname in ("bn.weight",):
                p.fill_(1.0)
    x = 60 * torch.randn(2, 256, 8, 4)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_fp16_affinity_would_overflow_without_the_float32_rule() -> None:
    nl = NonLocal(256).eval()
    x = 200 * torch.randn(2, 256, 8, 4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        theta = nl.theta(x).flatten(2)
        naive = theta.transpose(1, 2) @ nl.phi(x).flatten(2)
        assert naive.dtype == torch.float16
        assert not torch.isfinite(naive).all()  # what the float32 rule prevents
        assert torch.isfinite(nl.attention_map(x)).all()
