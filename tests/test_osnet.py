"""OSNet / OSNet-AIN backbones: shapes, channels, parameter counts, torchreid key layout, loading, IN placement,
the omni-scale formula on a hand-written functional reference, attention insertion.

``tests/fixtures/torchreid_osnet_x1_0_keys.json`` lists the state-dict keys and shapes of torchreid's own
``osnet_x1_0`` and ``osnet_ain_x1_0`` (num_classes=1000, the ImageNet checkpoints' layout), generated once from
the ``torchreid`` package; a checkpoint of random tensors in that layout stands in for the real files, which
the tests never download.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.models import weights
from reidkit.models.backbones.osnet import (
    OSNET_BUILDERS,
    WIDTHS,
    ChannelGate,
    LightConv3x3,
    OSBlockAIN,
    OSBlockINin,
    OSNet,
    OSNetAIN,
    osnet_ain_x0_25,
    osnet_ain_x1_0,
    osnet_x0_25,
    osnet_x0_5,
    osnet_x1_0,
)
from reidkit.models.weights import load_pretrained

FIXTURE = Path(__file__).parent / "fixtures" / "torchreid_osnet_x1_0_keys.json"
HEADS = ("fc.", "classifier.")
SMALL = (2, 3, 64, 32)


@pytest.fixture(scope="module")
def torchreid_layout() -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    data = json.loads(FIXTURE.read_text())
    return {name: [(k, tuple(s)) for k, s in data[name]] for name in ("osnet_x1_0", "osnet_ain_x1_0")}


def _random_state(layout: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, Tensor]:
    """A checkpoint in ``layout`` with random values (positive variances, an int64 batch counter)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BN statistics, so that eval-mode comparisons are not trivially at init."""
    layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(_random_state(layout, seed))
    return model


# ------------------------------------------------------------------------------------------ builders, shapes
def test_builders_exported() -> None:
    expected = {f"osnet_{w}" for w in WIDTHS} | {f"osnet_ain_{w}" for w in WIDTHS}
    assert expected <= set(OSNET_BUILDERS)
    assert set(OSNET_BUILDERS) - expected == {"osnet_ibn_x1_0"}
    assert all(OSNET_BUILDERS[name].__name__ == name for name in OSNET_BUILDERS)


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("family", ["osnet", "osnet_ain"])
def test_out_channels_derived_per_width(family: str, width: str) -> None:
    net = OSNET_BUILDERS[f"{family}_{width}"]()
    expected = {"x1_0": 512, "x0_75": 384, "x0_5": 256, "x0_25": 128}[width]
    assert net.out_channels == expected == net.conv5.conv.out_channels
    assert net(torch.zeros(SMALL)).shape == (2, expected, 4, 2)


@pytest.mark.parametrize("builder", [osnet_x0_25, osnet_ain_x0_25])
def test_feature_map_shapes_256_and_384(builder) -> None:
    net = builder().eval()
    with torch.no_grad():
        maps = net.featuremaps(torch.randn(1, 3, 256, 128))
        tall = net.featuremaps(torch.randn(1, 3, 384, 128))
    sizes = {name: tuple(m.shape[1:]) for name, m in maps.items()}
    c0, c1, c2, c3 = WIDTHS["x0_25"]
    if isinstance(net, OSNetAIN):
        assert sizes == {"conv1": (c0, 128, 64), "maxpool": (c0, 64, 32), "conv2": (c1, 64, 32),
                         "pool2": (c1, 32, 16), "conv3": (c2, 32, 16), "pool3": (c2, 16, 8),
                         "conv4": (c3, 16, 8), "conv5": (c3, 16, 8)}
    else:  # transitions inside conv2 / conv3
        assert sizes == {"conv1": (c0, 128, 64), "maxpool": (c0, 64, 32), "conv2": (c1, 32, 16),
                         "conv3": (c2, 16, 8), "conv4": (c3, 16, 8), "conv5": (c3, 16, 8)}
    assert tall["conv2" if isinstance(net, OSNet) else "pool2"].shape[2:] == (48, 16)
    assert tall["conv5"].shape == (1, c3, 24, 8)
    assert list(maps) == list(net.stage_names)
    assert net.stage_channels == {name: m.shape[1] for name, m in maps.items()}


def test_featuremaps_end_with_forward_output() -> None:
    net = _randomise(osnet_x0_25()).eval()
    x = torch.randn(SMALL)
    with torch.no_grad():
        assert torch.equal(net.featuremaps(x)["conv5"], net(x))


@pytest.mark.parametrize("builder", [osnet_x0_25, osnet_ain_x0_25])
def test_last_stride(builder) -> None:
    x = torch.zeros(1, 3, 256, 128)
    assert builder(last_stride=1)(x).shape[2:] == (16, 8)
    net = builder(last_stride=2)
    assert net(x).shape[2:] == (8, 4)
    assert "pool4" in net.stage_names and net.stage_names.index("pool4") == net.stage_names.index("conv4") + 1
    # a parameter-free pool: the key layout (and so checkpoint compatibility) is unchanged
    assert list(net.state_dict()) == list(builder().state_dict())
    for bad in (0, 3, 4):
        with pytest.raises(ValueError, match="no strided last stage"):
            builder(last_stride=bad)


def test_eval_mode_is_deterministic_and_per_sample() -> None:
    for net in (_randomise(osnet_x0_25()).eval(), _randomise(osnet_ain_x0_25()).eval()):
        x = torch.randn(3, 3, 64, 32)
        with torch.no_grad():
            a, b = net(x), net(x)
            single = net(x[1:2])
        assert torch.equal(a, b)
        torch.testing.assert_close(single, a[1:2], rtol=1e-5, atol=1e-5)  # no batch coupling in eval


def test_training_step_reaches_every_parameter() -> None:
    net = osnet_ain_x0_25().train()
    net(torch.randn(2, 3, 64, 32)).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# ----------------------------------------------------------------------------------------- parameter counts
def _expected_params(c0: int, c1: int, c2: int, c3: int) -> int:
    """Parameters of the backbone (conv1 ... conv5), counted from the layer table of components.md §1.2.

    BN / affine IN: 2C. Conv1x1 and Conv1x1Linear a->b: ab + 2b. Lite 3x3 on m channels: m*m (1x1) + 9m
    (depthwise) + 2m (BN). Gate on m channels, hidden h = m // 16: (mh + h) + (hm + m). OSBlock a->b with
    m = b/4: Conv1x1(a, m) + 10 lite layers (1+2+3+4 over the four streams) + one shared gate +
    Conv1x1Linear(m, b) + a Conv1x1Linear(a, b) shortcut when a != b. A transition is a Conv1x1(c, c).
    OSNet-AIN swaps some BNs for affine INs of the same size, so it has the same count.
    """
    def conv1x1(a: int, b: int) -> int:
        return a * b + 2 * b

    def block(a: int, b: int) -> int:
        m = b // 4
        h = m // 16
        lite = m * m + 9 * m + 2 * m
        gate = m * h + h + h * m + m
        return conv1x1(a, m) + 10 * lite + gate + conv1x1(m, b) + (conv1x1(a, b) if a != b else 0)

    stem = 3 * c0 * 7 * 7 + 2 * c0
    return (stem + block(c0, c1) + block(c1, c1) + conv1x1(c1, c1) + block(c1, c2) + block(c2, c2)
            + conv1x1(c2, c2) + block(c2, c3) + block(c3, c3) + conv1x1(c3, c3))


@pytest.mark.parametrize("width", list(WIDTHS))
def test_parameter_counts(width: str) -> None:
    """x1.0: 1,905,828 backbone parameters. torchreid's model adds the 512-d ``fc`` embedding
    (512*c3 + 512 + 2*512 = 263,680) -> 2,169,508; torchreid's published "2.2 M" (2,193,616 from its
    hook-based counter) counts each block's *shared* gate once per stream, i.e. 3 extra times (+24,108)."""
    count = {name: sum(p.numel() for p in OSNET_BUILDERS[name]().parameters())
             for name in (f"osnet_{width}", f"osnet_ain_{width}")}
    expected = _expected_params(*WIDTHS[width])
    assert count == {f"osnet_{width}": expected, f"osnet_ain_{width}": expected}
    literal = {"x1_0": 1_905_828, "x0_75": 1_087_610, "x0_5": 497_426, "x0_25": 134_792}[width]
    assert expected == literal
    if width == "x1_0":
        fc = 512 * 512 + 512 + 2 * 512
        assert expected + fc == 2_169_508
        shared_gate_recounted = 3 * sum(2 * (m * (m // 16)) + m // 16 + m for m in (64, 64, 96, 96, 128, 128))
        assert expected + fc + shared_gate_recounted == 2_193_616


# ----------------------------------------------------------------------------------- torchreid key layout
def _reference_osnet_x1_0_layout() -> dict[str, tuple[int, ...]]:
    """torchreid ``osnet.py`` x1.0 backbone keys written from the description in components.md §1.2."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(p: str, c: int) -> None:
        keys.update({f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,),
                     f"{p}.running_var": (c,), f"{p}.num_batches_tracked": ()})

    def conv_bn(p: str, a: int, b: int, k: int = 1) -> None:  # ConvLayer / Conv1x1 / Conv1x1Linear
        keys[f"{p}.conv.weight"] = (b, a, k, k)
        bn(f"{p}.bn", b)

    def lite(p: str, m: int) -> None:
        keys[f"{p}.conv1.weight"] = (m, m, 1, 1)
        keys[f"{p}.conv2.weight"] = (m, 1, 3, 3)
        bn(f"{p}.bn", m)

    def block(p: str, a: int, b: int) -> None:
        m = b // 4
        conv_bn(f"{p}.conv1", a, m)
        lite(f"{p}.conv2a", m)
        for stream, depth in (("conv2b", 2), ("conv2c", 3), ("conv2d", 4)):
            for i in range(depth):
                lite(f"{p}.{stream}.{i}", m)
        keys.update({f"{p}.gate.fc1.weight": (m // 16, m, 1, 1), f"{p}.gate.fc1.bias": (m // 16,),
                     f"{p}.gate.fc2.weight": (m, m // 16, 1, 1), f"{p}.gate.fc2.bias": (m,)})
        conv_bn(f"{p}.conv3", m, b)
        if a != b:
            conv_bn(f"{p}.downsample", a, b)

    conv_bn("conv1", 3, 64, 7)
    for stage, (a, b), transition in (("conv2", (64, 256), True), ("conv3", (256, 384), True),
                                      ("conv4", (384, 512), False)):
        block(f"{stage}.0", a, b)
        block(f"{stage}.1", b, b)
        if transition:
            conv_bn(f"{stage}.2.0", b, b)
    conv_bn("conv5", 512, 512)
    return keys


def test_key_layout_matches_the_written_description() -> None:
    got = {k: tuple(v.shape) for k, v in osnet_x1_0().state_dict().items()}
    assert got == _reference_osnet_x1_0_layout()
    # representative keys, spelled out
    assert got["conv1.conv.weight"] == (64, 3, 7, 7)
    assert got["conv2.0.conv1.conv.weight"] == (64, 64, 1, 1)
    assert got["conv2.0.conv2b.1.conv1.weight"] == (64, 64, 1, 1)
    assert got["conv2.0.conv2d.3.conv2.weight"] == (64, 1, 3, 3)
    assert got["conv2.0.gate.fc1.weight"] == (4, 64, 1, 1) and got["conv2.0.gate.fc1.bias"] == (4,)
    assert got["conv2.0.downsample.conv.weight"] == (256, 64, 1, 1)
    assert "conv2.1.downsample.conv.weight" not in got  # 256 -> 256: identity shortcut
    assert got["conv2.2.0.conv.weight"] == (256, 256, 1, 1)  # transition
    assert got["conv3.2.0.bn.running_mean"] == (384,)
    assert "conv4.2.0.conv.weight" not in got  # no transition after conv4
    assert got["conv5.conv.weight"] == (512, 512, 1, 1)
    assert not any(k.startswith(HEADS) for k in got)


@pytest.mark.parametrize(("name", "builder"), [("osnet_x1_0", osnet_x1_0), ("osnet_ain_x1_0", osnet_ain_x1_0)])
def test_key_layout_equals_torchreid(torchreid_layout, name: str, builder) -> None:
    reference = torchreid_layout[name]
    backbone = [(k, s) for k, s in reference if not k.startswith(HEADS)]
    got = [(k, tuple(v.shape)) for k, v in builder().state_dict().items()]
    assert got == backbone  # same names, shapes and order
    assert dict(reference)["fc.0.weight"] == (512, 512)
    assert dict(reference)["classifier.weight"] == (1000, 512)


@pytest.mark.parametrize(("name", "builder"), [("osnet_x1_0", osnet_x1_0), ("osnet_ain_x1_0", osnet_ain_x1_0)])
def test_torchreid_imagenet_checkpoint_loads_with_only_heads_dropped(
    torchreid_layout, tmp_path: Path, name: str, builder
) -> None:
    state = _random_state(torchreid_layout[name])
    path = tmp_path / f"{name}_imagenet.pth"
    torch.save(state, path)
    net = builder(pretrained=path)
    report = net.load_report
    heads = [k for k, _ in torchreid_layout[name] if k.startswith(HEADS)]
    assert report.unexpected == heads == ["fc.0.weight", "fc.0.bias", "fc.1.weight", "fc.1.bias",
                                          "fc.1.running_mean", "fc.1.running_var", "fc.1.num_batches_tracked",
                                          "classifier.weight", "classifier.bias"]
    assert report.missing == [] and report.new == []
    assert len(report.loaded) == len(net.state_dict())
    assert torch.equal(net.conv2[0].gate.fc1.weight, state["conv2.0.gate.fc1.weight"])


def test_pretrained_true_uses_the_library_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(tmp_path))
    state = _randomise(osnet_x0_25()).state_dict()
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "osnet_x0_25_imagenet.pth")
    net = osnet_x0_25(pretrained=True)
    assert net.load_report.source == str(tmp_path / "osnet_x0_25_imagenet.pth")
    assert torch.equal(net.conv5.conv.weight, state["conv5.conv.weight"])


def test_pretrained_true_offline_says_which_file_to_put_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(tmp_path))

    def offline(url: str, dst: str, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(weights, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError) as info:
        osnet_ain_x0_25(pretrained=True)
    message = str(info.value)
    assert "osnet_ain_x0_25_imagenet.pth" in message and str(tmp_path) in message
    assert "drive.google.com" in message


def test_checkpoint_missing_a_backbone_key_is_an_error(tmp_path: Path) -> None:
    state = osnet_x0_25().state_dict()
    del state["conv3.1.gate.fc2.bias"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"broken\.pth lacks 1 .*conv3\.1\.gate\.fc2\.bias"):
        osnet_x0_25(pretrained=path)


def test_wrong_width_is_a_shape_error(tmp_path: Path) -> None:
    path = tmp_path / "half.pth"
    torch.save(osnet_x0_5().state_dict(), path)
    with pytest.raises(ValueError, match=r"shape mismatch .*conv1\.conv\.weight: checkpoint \(32, 3, 7, 7\) "
                                         r"vs model \(16, 3, 7, 7\)"):
        osnet_x0_25(pretrained=path)


def test_osnet_checkpoint_does_not_load_into_ain() -> None:
    with pytest.raises(ValueError, match="lacks"):
        load_pretrained(osnet_ain_x0_25(), osnet_x0_25().state_dict())


# ---------------------------------------------------------------------------------- OSNet-AIN: IN placement
def test_ain_instance_norm_positions() -> None:
    net = osnet_ain_x1_0()
    assert isinstance(net.conv1.bn, nn.InstanceNorm2d) and net.conv1.bn.affine
    pattern = {"conv2": (OSBlockINin, OSBlockINin), "conv3": (OSBlockAIN, OSBlockINin),
               "conv4": (OSBlockINin, OSBlockAIN)}
    for stage, kinds in pattern.items():
        for block, kind in zip(getattr(net, stage), kinds, strict=True):
            assert type(block) is kind
            if kind is OSBlockINin:  # IN inside the residual branch, conv3 without BN
                assert isinstance(block.IN, nn.InstanceNorm2d) and block.IN.affine
                assert block.conv3.bn is None
            else:
                assert not hasattr(block, "IN") and isinstance(block.conv3.bn, nn.BatchNorm2d)
            assert [s.layers.__len__() for s in block.conv2] == [1, 2, 3, 4]
    instance_norms = [n for n, m in net.named_modules() if isinstance(m, nn.InstanceNorm2d)]
    assert instance_norms == ["conv1.bn", "conv2.0.IN", "conv2.1.IN", "conv3.1.IN", "conv4.0.IN"]
    # plain OSNet has none; OSNet-IBN puts IN in the stem and after conv2's residual sums
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in osnet_x1_0().modules())
    ibn = OSNET_BUILDERS["osnet_ibn_x1_0"]()
    assert [n for n, m in ibn.named_modules() if isinstance(m, nn.InstanceNorm2d)] == [
        "conv1.bn", "conv2.0.IN", "conv2.1.IN"]


def test_ain_conv1_in_false_reproduces_the_seed_stem(torchreid_layout) -> None:
    net = osnet_ain_x1_0(conv1_in=False)
    assert isinstance(net.conv1.bn, nn.BatchNorm2d)
    report = load_pretrained(net, _random_state(torchreid_layout["osnet_ain_x1_0"]),
                             new_modules=net.new_module_prefixes)
    assert report.new == ["conv1.bn.running_mean", "conv1.bn.running_var", "conv1.bn.num_batches_tracked"]


# -------------------------------------------------------------------- the formulas, on a functional reference
def _functional_osnet(sd: dict[str, Tensor], x: Tensor, ain: bool) -> Tensor:
    """Eval-mode OSNet / OSNet-AIN written directly from the paper's formulas on a state dict."""
    def conv(h: Tensor, p: str, padding: int = 0, stride: int = 1, groups: int = 1) -> Tensor:
        return F.conv2d(h, sd[p + ".weight"], sd.get(p + ".bias"), stride, padding, 1, groups)

    def norm(h: Tensor, p: str) -> Tensor:
        if p + ".running_mean" in sd:
            return F.batch_norm(h, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                                sd[p + ".bias"], False, 0.0, 1e-5)
        return F.instance_norm(h, weight=sd[p + ".weight"], bias=sd[p + ".bias"], eps=1e-5)

    def conv1x1(h: Tensor, p: str) -> Tensor:  # 1x1 conv -> BN -> ReLU
        return F.relu(norm(conv(h, p + ".conv"), p + ".bn"))

    def lite(h: Tensor, p: str) -> Tensor:  # 1x1 linear, depthwise 3x3, BN, ReLU
        m = sd[p + ".conv2.weight"].shape[0]
        return F.relu(norm(conv(conv(h, p + ".conv1"), p + ".conv2", padding=1, groups=m), p + ".bn"))

    def gated(z: Tensor, p: str) -> Tensor:  # z * sigmoid(W2 ReLU(W1 GAP(z) + b1) + b2)
        g = conv(F.relu(conv(z.mean((2, 3), keepdim=True), p + ".fc1")), p + ".fc2")
        return z * torch.sigmoid(g)

    def block(h: Tensor, p: str) -> Tensor:  # ReLU(shortcut(x) + [IN] conv3(sum_t G(x^t) x^t)) [IN after]
        x1 = conv1x1(h, p + ".conv1")
        if ain:
            streams = [[f"{p}.conv2.{t}.layers.{i}" for i in range(t + 1)] for t in range(4)]
        else:
            streams = [[f"{p}.conv2a"]] + [[f"{p}.conv2{s}.{i}" for i in range(n)] for s, n in (("b", 2), ("c", 3),
                                                                                                ("d", 4))]
        total = torch.zeros(())
        for layers in streams:
            z = x1
            for q in layers:
                z = lite(z, q)
            total = total + gated(z, p + ".gate")
        x3 = conv(total, p + ".conv3.conv")
        x3 = norm(x3, p + ".conv3.bn") if p + ".conv3.bn.weight" in sd else norm(x3, p + ".IN")
        shortcut = norm(conv(h, p + ".downsample.conv"), p + ".downsample.bn") if (
            p + ".downsample.conv.weight" in sd) else h
        return F.relu(x3 + shortcut)

    h = F.relu(norm(conv(x, "conv1.conv", padding=3, stride=2), "conv1.bn"))
    h = F.max_pool2d(h, 3, 2, 1)
    for stage in ("conv2", "conv3", "conv4"):
        h = block(block(h, stage + ".0"), stage + ".1")
        if stage != "conv4":
            transition = f"pool{stage[-1]}.0" if ain else f"{stage}.2.0"
            h = F.avg_pool2d(conv1x1(h, transition), 2, 2)
    return conv1x1(h, "conv5")


@pytest.mark.parametrize(("builder", "ain"), [(osnet_x0_25, False), (osnet_ain_x0_25, True)])
def test_forward_equals_the_omni_scale_formula(builder, ain: bool) -> None:
    net = _randomise(builder(), seed=3).eval()
    x = torch.randn(SMALL)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _functional_osnet(net.state_dict(), x, ain), rtol=1e-4, atol=1e-5)


def test_building_blocks() -> None:
    gate = ChannelGate(64)
    assert (gate.fc1.out_channels, gate.fc2.out_channels) == (4, 64)
    z = torch.randn(2, 64, 5, 3)
    g = torch.sigmoid(gate.fc2(F.relu(gate.fc1(z.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(gate(z), z * g)
    lite = LightConv3x3(16, 16)
    assert lite.conv2.groups == 16 and lite.conv1.kernel_size == (1, 1)
    assert sum(p.numel() for p in lite.parameters()) == 16 * 16 + 9 * 16 + 2 * 16
    # one gate per block, shared by the four streams
    block = osnet_x0_25().conv2[0]
    assert sum(isinstance(m, ChannelGate) for m in block.modules()) == 1


def test_init_is_the_papers() -> None:
    net = osnet_ain_x0_25()
    conv = net.conv3[0].conv1.conv
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() - (2.0 / fan_out) ** 0.5) < 0.3 * (2.0 / fan_out) ** 0.5
    assert torch.equal(net.conv2[0].gate.fc1.bias, torch.zeros_like(net.conv2[0].gate.fc1.bias))
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


# ------------------------------------------------------------------------------------------------ attention
class Tagged(nn.Module):
    """A stand-in attention module: zero-initialised 1x1 conv residual (identity at init), records its width."""

    def __init__(self, name: str, channels: int, scale: float = 1.0) -> None:
        super().__init__()
        self.name, self.channels, self.scale = name, channels, scale
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.scale * self.proj(x)


@pytest.mark.parametrize(("builder", "stages"), [(osnet_x0_25, ["conv2", "conv3"]),
                                                 (osnet_ain_x0_25, ["pool2", "pool3"])])
def test_attention_default_points_and_derived_channels(builder, stages: list[str]) -> None:
    net = builder(attention="tagged", attention_factory=Tagged, attention_kwargs={"scale": 2.0})
    assert list(net.attention) == stages
    c1, c2 = WIDTHS["x0_25"][1:3]
    assert [net.attention[s].channels for s in stages] == [c1, c2]
    assert all(net.attention[s].scale == 2.0 and net.attention[s].name == "tagged" for s in stages)
    # the attention keeps its own init (the backbone's kaiming init ran before it was inserted)
    assert all(torch.all(net.attention[s].proj.weight == 0) for s in stages)
    plain = builder()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("attention.")})
    x = torch.randn(SMALL)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), plain.eval()(x))  # identity at init -> same output
    assert net.featuremaps(x)[stages[0]].shape[1] == c1


def test_attention_reported_as_new_when_loading(tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    torch.save(osnet_x0_25().state_dict(), path)
    net = osnet_x0_25(pretrained=path, attention="tagged", attention_factory=Tagged)
    assert net.load_report.new == ["attention.conv2.proj.weight", "attention.conv2.proj.bias",
                                   "attention.conv3.proj.weight", "attention.conv3.proj.bias"]
    assert net.load_report.missing == []


def test_attention_layout_by_stage_name() -> None:
    net = osnet_x0_5(attention="tagged", attention_layout=["conv4", "conv2"], attention_factory=Tagged)
    assert {s: m.channels for s, m in net.attention.items()} == {"conv4": 256, "conv2": 128}
    with pytest.raises(ValueError, match="layer3"):
        osnet_x0_25(attention="tagged", attention_layout=["layer3"], attention_factory=Tagged)
    with pytest.raises(ValueError, match="without attention"):
        osnet_x0_25(attention_layout=["conv2"])


def test_attention_from_the_library_factory() -> None:
    attention = pytest.importorskip("reidkit.models.attention")
    if not hasattr(attention, "build_attention"):
        pytest.skip("reidkit.models.attention.build_attention not available yet")
    net = osnet_x0_25(attention="se")
    expected = type(attention.build_attention("se", 64))
    assert [type(m) for m in net.attention.values()] == [expected, expected]
    assert net(torch.randn(SMALL)).shape == (2, 128, 4, 2)
