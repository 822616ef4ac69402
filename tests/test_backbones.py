"""Backbone registry, ResNet family (last stride, IBN-a, attention insertion, seed option), EfficientNet,
MobileNetV3 and pretrained loading. CPU only, small inputs, never touches the network."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reidkit.models.weights as weights_module
from reidkit.models.backbones import BACKBONES, OSNET_NAMES, build_backbone
from reidkit.models.backbones.base import remove_stride
from reidkit.models.backbones.ibn import IBN
from reidkit.models.backbones.resnet import SeedPrefixBottleneck, default_weights

SMALL = (1, 3, 64, 32)

#: out_channels and parameter count without the ImageNet classifier (torchvision / timm totals minus the head:
#: e.g. ResNet-50 25,557,032 - 2,049,000). IBN-a has as many parameters as its ResNet (IN and BN are both affine).
EXPECTED: dict[str, tuple[int, int]] = {
    "resnet18": (512, 11_176_512),
    "resnet34": (512, 21_284_672),
    "resnet50": (2048, 23_508_032),
    "resnet101": (2048, 42_500_160),
    "resnet152": (2048, 58_143_808),
    "resnext50_32x4d": (2048, 22_979_904),
    "resnext101_32x8d": (2048, 86_742_336),
    "se_resnet50": (2048, 26_039_024),
    "se_resnet101": (2048, 47_277_872),
    "resnet50d": (2048, 23_527_264),
    "resnest50": (2048, 25_434_240),
    "resnet50_ibn_a": (2048, 23_508_032),
    "resnet101_ibn_a": (2048, 42_500_160),
    "efficientnet_b0": (1280, 4_007_548),
    "efficientnet_b1": (1280, 6_513_184),
    "efficientnet_b2": (1408, 7_700_994),
    "efficientnet_b3": (1536, 10_696_232),
    "efficientnet_b4": (1792, 17_548_616),
    "mobilenetv3_large": (960, 2_971_952),
    "mobilenetv3_small": (576, 927_008),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """An empty weights folder and a downloader that fails like a machine without network."""

    def refuse(url: str, dst: str, **_: object) -> None:
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> ({url})")

    folder = tmp_path / "weights"
    monkeypatch.setenv(weights_module.WEIGHTS_ENV, str(folder))
    monkeypatch.setattr(weights_module, "download_url_to_file", refuse)
    return folder


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------
def test_registry_names():
    assert set(EXPECTED) | set(OSNET_NAMES) == set(BACKBONES)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown backbone 'resnet51'") as err:
        build_backbone("resnet51")
    assert "resnet50" in str(err.value) and "osnet_x1_0" in str(err.value) and "mobilenetv3_small" in str(err.value)


def test_osnet_names_dispatch_lazily():
    from reidkit.models.backbones.osnet import OSNET_BUILDERS

    assert set(OSNET_BUILDERS) <= set(BACKBONES)
    net = build_backbone("osnet_x0_25").eval()
    assert net.out_channels == 128
    assert net(torch.zeros(SMALL)).shape == (1, 128, 4, 2)


def test_registry_imports_osnet_lazily():
    """The registry module never imports osnet at import time (it must work before/without that file)."""
    import reidkit.models.backbones as registry

    tree = ast.parse(Path(registry.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not [node for node in top_level if "osnet" in ast.dump(node)]


# ---------------------------------------------------------------------------------------------------------
# Every backbone: builds, forwards, output stride, channels, parameters, featuremaps
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXPECTED))
def test_builds_and_forwards(name: str):
    channels, params = EXPECTED[name]
    x = torch.randn(SMALL)
    net = build_backbone(name, last_stride=1).eval()
    assert net.out_channels == channels
    assert n_params(net) == params
    maps = net.featuremaps(x)
    assert list(maps) == list(net.stage_names)
    out = net(x)
    assert out.shape == (1, channels, 4, 2)  # output stride 16
    torch.testing.assert_close(maps[net.stage_names[-1]], out, rtol=0, atol=0)
    coarse = build_backbone(name, last_stride=2).eval()
    assert coarse(x).shape == (1, channels, 2, 1)  # output stride 32
    assert n_params(coarse) == params


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_backbone_at_reid_input_sizes(name: str):
    """The re-ID input sizes themselves: 256x128 gives a 16x8 map, 384x128 a 24x8 map (output stride 16)."""
    net = build_backbone(name).eval()
    for height, width in ((256, 128), (384, 128)):
        assert net(torch.randn(1, 3, height, width)).shape == (1, net.out_channels, height // 16, width // 16)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_reid_input_sizes(name: str):
    net = build_backbone(name).eval()
    c = net.out_channels
    maps = net.featuremaps(torch.randn(1, 3, 256, 128))
    width = 1 if name == "resnet18" else 4
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {
        "stem": (64, 64, 32),
        "layer1": (64 * width, 64, 32),
        "layer2": (128 * width, 32, 16),
        "layer3": (256 * width, 16, 8),
        "layer4": (c, 16, 8),
    }
    assert net(torch.randn(1, 3, 384, 128)).shape == (1, c, 24, 8)


def test_last_stride_one_is_invalid_elsewhere():
    with pytest.raises(ValueError, match="last_stride"):
        build_backbone("resnet18", last_stride=3)
    with pytest.raises(ValueError, match="no stride-2 layer"):
        remove_stride(nn.Conv2d(3, 3, 3, padding=1))


# ---------------------------------------------------------------------------------------------------------
# last_stride surgery
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("last_stride", [1, 2])
def test_last_stride_changes_conv_and_shortcut(last_stride: int):
    net = build_backbone("resnet50", last_stride=last_stride)
    s = (last_stride, last_stride)
    block = net.layer4[0]
    assert block.conv2.stride == s and block.downsample[0].stride == s
    assert block.conv1.stride == (1, 1)  # v1.5: stride in the 3x3 only
    # earlier stages untouched
    assert net.layer3[0].conv2.stride == (2, 2) and net.layer3[0].downsample[0].stride == (2, 2)


def test_last_stride_resnet_d_and_resnest_pools():
    d1, d2 = build_backbone("resnet50d", last_stride=1), build_backbone("resnet50d", last_stride=2)
    assert isinstance(d1.layer4[0].downsample[0], nn.Identity)  # avg-pool shortcut removed
    assert isinstance(d2.layer4[0].downsample[0], nn.AvgPool2d)
    assert d1.layer4[0].downsample[1].stride == (1, 1)
    assert isinstance(d1.layer3[0].downsample[0], nn.AvgPool2d)
    s1, s2 = build_backbone("resnest50", last_stride=1), build_backbone("resnest50", last_stride=2)
    assert isinstance(s1.layer4[0].avd_last, nn.Identity) and isinstance(s2.layer4[0].avd_last, nn.AvgPool2d)
    assert isinstance(s1.layer4[0].downsample[0], nn.Identity)


def test_last_stride_efficientnet_and_mobilenet():
    eff = build_backbone("efficientnet_b0", last_stride=1)
    assert eff.features[6][0].block[1][0].stride == (1, 1)  # stage 6's depthwise conv
    assert eff.features[4][0].block[1][0].stride == (2, 2)
    large = build_backbone("mobilenetv3_large", last_stride=1)
    assert large.features[13].block[1][0].stride == (1, 1)  # bneck 13
    assert large.features[7].block[1][0].stride == (2, 2)
    small = build_backbone("mobilenetv3_small", last_stride=1)
    assert small.features[9].block[1][0].stride == (1, 1)  # bneck 9
    assert large.stage_names == ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head")
    assert small.stage_names == ("stem", "stage1", "stage2", "stage3", "stage4", "head")


def test_efficientnet_seed_options():
    x = torch.randn(SMALL)
    seed = build_backbone("efficientnet_b0", stem_stride=1, drop_path_schedule="constant").eval()
    assert seed(x).shape[-2:] == (8, 4)  # output stride 8 with the stride-1 stem and last_stride=1
    assert build_backbone("efficientnet_b0", last_stride=2, stem_stride=1).eval()(x).shape[-2:] == (4, 2)
    blocks = lambda net: [b for stage in net.features[1:-1] for b in stage]  # noqa: E731
    assert {b.stochastic_depth.p for b in blocks(seed)} == {0.2}
    linear = [b.stochastic_depth.p for b in blocks(build_backbone("efficientnet_b0"))]
    assert linear[0] == 0.0 and linear == sorted(linear) and max(linear) < 0.2
    with pytest.raises(ValueError, match="drop_path_schedule"):
        build_backbone("efficientnet_b0", drop_path_schedule="cosine")
    with pytest.raises(ValueError, match="attention insertion"):
        build_backbone("mobilenetv3_small", attention="se")


# ---------------------------------------------------------------------------------------------------------
# IBN-a
# ---------------------------------------------------------------------------------------------------------
def test_ibn_a_layout_and_keys():
    net = build_backbone("resnet50_ibn_a")
    assert isinstance(net.bn1, nn.BatchNorm2d)
    for layer in (net.layer1, net.layer2, net.layer3):
        for block in layer:
            c = block.conv1.out_channels
            assert isinstance(block.bn1, IBN)
            assert block.bn1.IN.num_features == c // 2 and block.bn1.BN.num_features == c - c // 2
            assert block.bn1.IN.affine and not block.bn1.IN.track_running_stats
            assert isinstance(block.bn2, nn.BatchNorm2d) and isinstance(block.bn3, nn.BatchNorm2d)
    assert all(isinstance(block.bn1, nn.BatchNorm2d) for block in net.layer4)
    # exactly the XingangPan/IBN-Net resnet50_ibn_a key layout: torchvision's, with bn1 split in layers 1-3
    plain = build_backbone("resnet50").state_dict()
    expected = set()
    for key in plain:
        parts = key.split(".")
        if parts[0] in ("layer1", "layer2", "layer3") and parts[2] == "bn1":
            tensor = parts[3]
            if tensor in ("weight", "bias"):
                expected |= {f"{'.'.join(parts[:3])}.IN.{tensor}", f"{'.'.join(parts[:3])}.BN.{tensor}"}
            else:
                expected.add(f"{'.'.join(parts[:3])}.BN.{tensor}")
        else:
            expected.add(key)
    assert set(net.state_dict()) == expected
    assert "layer1.0.bn1.IN.weight" in expected and "layer3.5.bn1.BN.running_var" in expected


def test_ibn_formula_odd_channels():
    ibn = IBN(5).eval()
    assert ibn.half == 2
    nn.init.normal_(ibn.IN.weight)
    nn.init.normal_(ibn.BN.bias)
    ibn.BN.running_mean.normal_()
    x = torch.randn(2, 5, 6, 4)
    expected = torch.cat(
        (
            F.instance_norm(x[:, :2], weight=ibn.IN.weight, bias=ibn.IN.bias),
            F.batch_norm(x[:, 2:], ibn.BN.running_mean, ibn.BN.running_var, ibn.BN.weight, ibn.BN.bias),
        ),
        dim=1,
    )
    torch.testing.assert_close(ibn(x), expected)


# ---------------------------------------------------------------------------------------------------------
# Attention insertion
# ---------------------------------------------------------------------------------------------------------
class StandIn(nn.Module):
    """Records the channel count it was built for; identity in forward."""

    def __init__(self, name: str, channels: int, **kw: object) -> None:
        super().__init__()
        self.channels, self.kw = channels, kw
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.channels
        return x * self.scale.view(1, -1, 1, 1)


def positions(net: nn.Module) -> dict[str, list[int]]:
    return {layer: sorted(int(i) for i in mods) for layer, mods in net.attention.items()}


def test_nonlocal_layout_resnet50():
    from reidkit.models.attention import NonLocal

    net = build_backbone("resnet50", attention="nonlocal")
    modules = [m for m in net.modules() if isinstance(m, NonLocal)]
    assert len(modules) == 5
    assert positions(net) == {"layer2": [2, 3], "layer3": [3, 4, 5]}  # blocks 3-4 and 4-6 (1-based)
    assert net.attention_layout == (0, 2, 3, 0)
    assert net.new_module_prefixes == ("attention.",)


@pytest.mark.parametrize(
    ("name", "expected", "channels"),
    [
        ("resnet18", {"layer2": [0, 1], "layer3": [0, 1]}, (128, 256)),  # [0,2,3,0] capped at 2 blocks
        ("resnet34", {"layer2": [2, 3], "layer3": [3, 4, 5]}, (128, 256)),
        ("resnet101", {"layer2": [2, 3], "layer3": list(range(14, 23))}, (512, 1024)),  # [0,2,9,0]
        ("resnest50", {"layer2": [2, 3], "layer3": [3, 4, 5]}, (512, 1024)),  # the seed silently ignored it
    ],
)
def test_default_layouts_and_derived_channels(
    name: str, expected: dict[str, list[int]], channels: tuple[int, int]
):
    net = build_backbone(name, attention="any", attention_factory=StandIn, attention_kwargs={"reduction": 16})
    assert positions(net) == expected
    assert net.new_module_prefixes == ("attention.",)
    for layer, c in zip(("layer2", "layer3"), channels):
        assert {m.channels for m in net.attention[layer].values()} == {c}
        assert all(m.kw == {"reduction": 16} for m in net.attention[layer].values())


def test_attention_runs_right_after_its_block():
    net = build_backbone("resnet18", attention="any", attention_layout=[1, 0, 0, 1], attention_factory=StandIn)
    assert positions(net) == {"layer1": [1], "layer4": [1]}
    assert net.attention["layer1"]["1"].channels == 64 and net.attention["layer4"]["1"].channels == 512
    seen: dict[str, torch.Tensor] = {}
    net.layer1[1].register_forward_hook(lambda m, i, o: seen.__setitem__("block", o.clone()))
    net.attention["layer1"]["1"].register_forward_hook(lambda m, i, o: seen.__setitem__("attn_in", i[0].clone()))
    net.layer2[0].register_forward_hook(lambda m, i, o: seen.__setitem__("next_in", i[0].clone()))
    with torch.no_grad():
        net.attention["layer1"]["1"].scale.fill_(2.0)
    net.eval()(torch.randn(SMALL))
    torch.testing.assert_close(seen["attn_in"], seen["block"], rtol=0, atol=0)
    torch.testing.assert_close(seen["next_in"], 2 * seen["block"])


@pytest.mark.parametrize("attention", ["cbam", "fpb", "gc", "nonlocal", "plr", "se"])
def test_every_attention_name_same_points(attention: str):
    net = build_backbone("resnet18", attention=attention).eval()
    assert positions(net) == {"layer2": [0, 1], "layer3": [0, 1]}
    assert net(torch.randn(SMALL)).shape == (1, 512, 4, 2)


def test_bad_attention_layout():
    with pytest.raises(ValueError, match="attention_layout"):
        build_backbone("resnet18", attention="se", attention_layout=[0, 3, 0, 0])  # layer2 has 2 blocks
    with pytest.raises(ValueError, match="attention_layout"):
        build_backbone("resnet18", attention="se", attention_layout=[0, 2, 0])
    with pytest.raises(ValueError, match="without attention"):
        build_backbone("resnet18", attention_layout=[0, 2, 2, 0])


# ---------------------------------------------------------------------------------------------------------
# Seed bug reproduction
# ---------------------------------------------------------------------------------------------------------
def test_seed_prefix_resnet_stem_pool_and_block():
    x = torch.randn(1, 3, 66, 34)  # conv1 gives 33x17: odd, so the two pools differ in size
    fixed = build_backbone("resnet50").eval()
    seed = build_backbone("resnet50", seed_prefix_resnet=True).eval()
    assert set(seed.state_dict()) == set(fixed.state_dict())  # same keys: torchvision weights load
    seed.load_state_dict(fixed.state_dict())
    assert fixed.featuremaps(x)["stem"].shape[-2:] == (17, 9)
    assert seed.featuremaps(x)["stem"].shape[-2:] == (16, 8)
    even = torch.randn(1, 3, 64, 32)  # conv1 32x16: same size, windows shifted by one pixel
    a, b = fixed.featuremaps(even)["stem"], seed.featuremaps(even)["stem"]
    assert a.shape == b.shape and not torch.equal(a, b)
    # the block: no ReLU after bn2
    assert isinstance(seed.layer1[0], SeedPrefixBottleneck)
    block, ref = seed.layer1[1], fixed.layer1[1]
    block.bn2.running_mean.fill_(0.5)  # bn2 outputs negative somewhere, where the missing ReLU matters
    ref.load_state_dict(block.state_dict())
    h = torch.randn(1, 256, 8, 4)
    out = F.relu(block.bn1(block.conv1(h)))
    out = block.bn3(block.conv3(block.bn2(block.conv2(out))))
    torch.testing.assert_close(block(h), F.relu(out + h))
    assert not torch.allclose(block(h), ref(h))


def test_seed_prefix_rejected_for_timm_models():
    with pytest.raises(ValueError, match="seed_prefix_resnet"):
        build_backbone("resnet50d", seed_prefix_resnet=True)


# ---------------------------------------------------------------------------------------------------------
# Pretrained loading
# ---------------------------------------------------------------------------------------------------------
def test_pretrained_path_round_trip_and_new_attention(tmp_path):
    x = torch.randn(2, 3, 64, 32)
    source = build_backbone("resnet18").eval()
    state = dict(source.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)  # a torchvision-style file
    path = tmp_path / "r18.pth"
    torch.save(state, path)

    loaded = build_backbone("resnet18", pretrained=path).eval()
    assert torch.equal(loaded(x), source(x))
    report = loaded.load_report
    assert report.unexpected == ["fc.weight", "fc.bias"] and report.new == [] and report.missing == []
    assert len(report.loaded) == len(source.state_dict())

    with_nl = build_backbone("resnet18", pretrained=str(path), attention="nonlocal").eval()
    new = with_nl.load_report.new
    assert new and all(k.startswith("attention.") for k in new)
    assert {k.split(".")[1] + "." + k.split(".")[2] for k in new} == {"layer2.0", "layer2.1", "layer3.0", "layer3.1"}
    assert with_nl.load_report.missing == []
    torch.testing.assert_close(with_nl(x), source(x))  # non-local is the identity at init


def test_pretrained_ibn_checkpoint_loads(tmp_path):
    source = build_backbone("resnet50_ibn_a", last_stride=2).eval()
    for m in source.modules():
        if isinstance(m, nn.InstanceNorm2d):
            nn.init.normal_(m.weight)
    path = tmp_path / "resnet50_ibn_a.pth"
    torch.save({**source.state_dict(), "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}, path)
    net = build_backbone("resnet50_ibn_a", pretrained=path, last_stride=2).eval()
    x = torch.randn(1, 3, 64, 32)
    assert torch.equal(net(x), source(x))


def test_pretrained_mismatch_is_an_error(tmp_path):
    state = build_backbone("resnet18").state_dict()
    missing = {k: v for k, v in state.items() if k != "layer2.0.conv1.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="layer2.0.conv1.weight"):
        build_backbone("resnet18", pretrained=tmp_path / "missing.pth")
    wrong = {**state, "conv1.weight": torch.zeros(32, 3, 7, 7)}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="shape mismatch.*conv1.weight"):
        build_backbone("resnet18", pretrained=tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="lacks"):  # a ResNet-18 file for a ResNet-34
        build_backbone("resnet34", pretrained=tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError):
        build_backbone("resnet18", pretrained=tmp_path / "absent.pth")
    with pytest.raises(TypeError, match="pretrained"):
        build_backbone("resnet18", pretrained=1.0)


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ("resnet18", "resnet18-f37072fd.pth"),
        ("resnet50_ibn_a", "resnet50_ibn_a-d9d0bb7b.pth"),
        ("resnet50d", "resnet50d_ra2-464e36ba.pth"),
        ("resnest50", "resnest50d.in1k.pth"),
        ("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth"),
        ("mobilenetv3_small", "mobilenet_v3_small-047dcff4.pth"),
    ],
)
def test_pretrained_true_offline_says_where_to_put_the_file(offline, name: str, filename: str):
    with pytest.raises(FileNotFoundError) as err:
        build_backbone(name, pretrained=True)
    message = str(err.value)
    assert filename in message and str(offline) in message and "by hand" in message


def test_pretrained_true_uses_the_local_file(offline):
    source = build_backbone("resnet18").eval()
    offline.mkdir(parents=True)
    torch.save(source.state_dict(), offline / "resnet18-f37072fd.pth")
    net = build_backbone("resnet18", pretrained=True).eval()  # the downloader would raise if called
    x = torch.randn(SMALL)
    assert torch.equal(net(x), source(x))


def test_default_weight_files():
    r50 = default_weights("resnet50")
    assert r50.filename == "resnet50-0676ba61.pth" and r50.url.startswith("https://download.pytorch.org/")
    assert default_weights("resnet101_ibn_a").url.endswith("XingangPan/IBN-Net/releases/download/v1.0/"
                                                           "resnet101_ibn_a-59ea0ac6.pth")
    assert default_weights("resnest50").url == "https://huggingface.co/timm/resnest50d.in1k/resolve/main/pytorch_model.bin"
    assert default_weights("se_resnet101") is None


def test_no_standard_weights_for_se_resnet101():
    with pytest.raises(ValueError, match="no standard ImageNet weights for 'se_resnet101'"):
        build_backbone("se_resnet101", pretrained=True)
