"""The ResNet family as re-ID backbones: torchvision / timm architectures, one reidkit wrapper.

Residual learning (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv 1512.03385): each block computes y = ReLU(F(x) + S(x)), S the identity or a strided 1×1 conv + BN.
Bottleneck ("v1.5", stride in the 3×3): F = BN(conv1×1(ReLU(BN(conv3×3_s(ReLU(BN(conv1×1(x)))))))).
Stem: conv 7×7 s2 (64) → BN → ReLU → max-pool 3×3 s2 padding 1; stage outputs 256/512/1024/2048 channels
(64/128/256/512 for the basic-block ResNet-18/34).

Names and where the architecture comes from (no architecture is copied here):

==================  ======================================================================================
resnet18..152       torchvision ``ResNet`` (weights ``IMAGENET1K_V1``)
resnext50_32x4d,    torchvision; grouped 3×3, 32 groups, inner width planes·(w/64)·32 (Xie et al., CVPR 2017,
resnext101_32x8d    arXiv 1611.05431)
se_resnet50/101     timm ``seresnet50`` / ``seresnet101``: SE on the residual branch after bn3, before the add,
                    reduction 16 (Hu et al., CVPR 2018, arXiv 1709.01507). timm ships no SE-ResNet-101 weights.
resnet50d           timm ``resnet50d``: ResNet-D (He et al., "Bag of Tricks", CVPR 2019, arXiv 1812.01187):
                    deep stem 3×3 convs 32 s2, 32, 64; shortcut AvgPool 2×2 s2 → 1×1 conv → BN
resnest50           timm ``resnest50d``: split attention, radix 2 (Zhang et al., arXiv 2004.08955)
resnet50_ibn_a,     torchvision ResNet-50/101 with IBN-a in layers 1-3 (:mod:`.ibn`, Pan et al., ECCV 2018);
resnet101_ibn_a     weights from ``XingangPan/IBN-Net`` releases
==================  ======================================================================================

Re-ID changes, all keeping the library's parameter names so its checkpoints load unchanged:

* ``last_stride`` (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-ID", CVPRW 2019,
  arXiv 1903.07071): stride of layer4's first block -- its strided conv and its shortcut conv (ResNet-D /
  ResNeSt: shortcut avg-pool and ``avd`` pool become identity). 1 (default): output stride 16, a 16×8 map
  at 256×128; 2: output stride 32, 8×4.
* attention after the last n blocks of each stage (AGW / FastReID non-local layout, Ye et al., TPAMI 2021,
  arXiv 2001.04193): n = [0, 2, 3, 0] for the 50-layer nets, [0, 2, 9, 0] for 101 (and, reidkit's choice as no
  layout is published, 152), [0, 2, 3, 0] capped at the stage length for 18/34 (ResNet-18: [0, 2, 2, 0]).
  Modules live under ``attention.<layer>.<block index>`` and are reported as new by the loader.
* ``seed_prefix_resnet=True`` reproduces the seed before commit ``f290d55`` (``components.md`` §1.1): no ReLU
  after bn2 in the Bottleneck, stem max-pool ``MaxPool2d(3, 2, padding=0, ceil_mode=True)``. With a stem
  output of even size 2n both pools give n (but windows shifted by one pixel); with odd size 2n+1 the seed's
  pool gives n instead of n+1 (e.g. a 66×34 input: conv1 33×17, pool 17×9 vs seed 16×8).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from reidkit.models.backbones.base import (
    Backbone,
    Pretrained,
    WeightFile,
    check_last_stride,
    load_backbone_weights,
    remove_stride,
)
from reidkit.models.backbones.ibn import apply_ibn_a

LAYERS = ("layer1", "layer2", "layer3", "layer4")
LAYOUT_50 = (0, 2, 3, 0)
LAYOUT_101 = (0, 2, 9, 0)

AttentionFactory = Callable[..., nn.Module]

IBN_NET_RELEASES = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0"


class SeedPrefixBottleneck(Bottleneck):
    """torchvision's Bottleneck *without* the ReLU after bn2: the seed's block before commit ``f290d55``.

    y = ReLU(BN₃(conv₃(BN₂(conv₂(ReLU(BN₁(conv₁ x)))))) + S(x)). Only for ``seed_prefix_resnet=True``.
    """

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))  # the seed's bug: no ReLU here
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetSpec:
    """How to build one named backbone: torchvision (block, layers, groups, width) or a timm model name."""

    layout: tuple[int, int, int, int]
    tv_block: str | None = None  # "basic" | "bottleneck"
    tv_layers: tuple[int, int, int, int] | None = None
    groups: int = 1
    width_per_group: int = 64
    tv_weights: str | None = None  # torchvision weight enum, member IMAGENET1K_V1
    timm_name: str | None = None
    ibn_a: bool = False
    weight_file: WeightFile | None = None  # weights not in a torchvision enum / timm cfg


SPECS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(LAYOUT_50, "basic", (2, 2, 2, 2), tv_weights="ResNet18_Weights"),
    "resnet34": ResNetSpec(LAYOUT_50, "basic", (3, 4, 6, 3), tv_weights="ResNet34_Weights"),
    "resnet50": ResNetSpec(LAYOUT_50, "bottleneck", (3, 4, 6, 3), tv_weights="ResNet50_Weights"),
    "resnet101": ResNetSpec(LAYOUT_101, "bottleneck", (3, 4, 23, 3), tv_weights="ResNet101_Weights"),
    "resnet152": ResNetSpec(LAYOUT_101, "bottleneck", (3, 8, 36, 3), tv_weights="ResNet152_Weights"),
    "resnext50_32x4d": ResNetSpec(
        LAYOUT_50, "bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4, tv_weights="ResNeXt50_32X4D_Weights"
    ),
    "resnext101_32x8d": ResNetSpec(
        LAYOUT_101, "bottleneck", (3, 4, 23, 3), groups=32, width_per_group=8, tv_weights="ResNeXt101_32X8D_Weights"
    ),
    "se_resnet50": ResNetSpec(LAYOUT_50, timm_name="seresnet50"),
    "se_resnet101": ResNetSpec(LAYOUT_101, timm_name="seresnet101"),
    "resnet50d": ResNetSpec(LAYOUT_50, timm_name="resnet50d"),
    "resnest50": ResNetSpec(LAYOUT_50, timm_name="resnest50d"),
    "resnet50_ibn_a": ResNetSpec(
        LAYOUT_50, "bottleneck", (3, 4, 6, 3), ibn_a=True,
        weight_file=WeightFile("resnet50_ibn_a-d9d0bb7b.pth", f"{IBN_NET_RELEASES}/resnet50_ibn_a-d9d0bb7b.pth"),
    ),
    "resnet101_ibn_a": ResNetSpec(
        LAYOUT_101, "bottleneck", (3, 4, 23, 3), ibn_a=True,
        weight_file=WeightFile("resnet101_ibn_a-59ea0ac6.pth", f"{IBN_NET_RELEASES}/resnet101_ibn_a-59ea0ac6.pth"),
    ),
}


def block_out_channels(block: nn.Module) -> int:
    """Output channels of a residual block, read from its last convolution (``conv3``, else ``conv2``)."""
    for attr in ("conv3", "conv2"):
        conv = getattr(block, attr, None)
        if isinstance(conv, nn.Conv2d):
            return conv.out_channels
    raise TypeError(f"cannot read the output channels of {type(block).__name__}: no conv3/conv2 Conv2d")


def resolve_layout(
    layout: Sequence[int] | None, default: Sequence[int], stage_lengths: Sequence[int]
) -> tuple[int, ...]:
    """Attention modules per stage: ``layout`` as given (checked against the stage lengths) or ``default``
    capped at each stage's length."""
    if layout is None:
        return tuple(min(n, length) for n, length in zip(default, stage_lengths))
    layout = tuple(int(n) for n in layout)
    if len(layout) != len(stage_lengths) or any(
        not 0 <= n <= length for n, length in zip(layout, stage_lengths)
    ):
        raise ValueError(
            f"attention_layout must give, for each of the {len(stage_lengths)} stages, 0..blocks in that stage "
            f"(stage lengths {list(stage_lengths)}), got {list(layout)}"
        )
    return layout


class ResNetBackbone(Backbone):
    """A ResNet-family trunk (stem + layer1..4 taken from a torchvision or timm model, names unchanged) with
    last-stride control and attention after chosen blocks.

    Stages: ``stem`` (/4), ``layer1`` (/4), ``layer2`` (/8), ``layer3`` (/16), ``layer4`` (/16 with
    ``last_stride=1``, /32 with 2). The classifier (``fc``) and global pool of the source model are dropped.

    Args:
        trunk: a torchvision ``ResNet`` or timm ``ResNet``.
        stem: names of the stem modules on ``trunk``, in order.
        last_stride: 1 or 2, the stride of layer4's first block.
        attention: a name for :func:`reidkit.models.attention.build_attention`, or ``None``.
        attention_layout: attention modules after the last n blocks of each stage (4 ints); default
            ``default_layout`` capped at the stage lengths.
        attention_kwargs: extra keyword arguments for the factory (e.g. ``reduction=16`` for non-local).
        attention_factory: ``factory(name, channels, **kw) -> nn.Module``; default
            :func:`reidkit.models.attention.build_attention` (the same hook as OSNet's).
    """

    stage_names = ("stem", *LAYERS)

    def __init__(
        self,
        trunk: nn.Module,
        stem: Sequence[str],
        *,
        last_stride: int = 1,
        attention: str | None = None,
        attention_layout: Sequence[int] | None = None,
        default_layout: Sequence[int] = LAYOUT_50,
        attention_kwargs: Mapping[str, Any] | None = None,
        attention_factory: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        check_last_stride(last_stride)
        self._stem = tuple(stem)
        for name in (*self._stem, *LAYERS):
            self.add_module(name, getattr(trunk, name))
        if last_stride == 1:
            remove_stride(self.layer4[0])
        self.attention = nn.ModuleDict()
        self.attention_layout: tuple[int, ...] = (0,) * len(LAYERS)
        if attention is None:
            if attention_layout is not None or attention_kwargs:
                raise ValueError("attention_layout / attention_kwargs given without attention=<name>")
        else:
            if attention_factory is None:
                from reidkit.models.attention import build_attention as attention_factory
            self._insert_attention(
                attention_factory, attention, attention_layout, default_layout, dict(attention_kwargs or {})
            )
        self.out_channels = block_out_channels(self.layer4[-1])

    def _insert_attention(
        self,
        factory: AttentionFactory,
        name: str,
        layout: Sequence[int] | None,
        default: Sequence[int],
        kwargs: dict[str, Any],
    ) -> None:
        layers = [getattr(self, layer) for layer in LAYERS]
        counts = resolve_layout(layout, default, [len(layer) for layer in layers])
        for layer_name, layer, n in zip(LAYERS, layers, counts):
            if n:
                self.attention[layer_name] = nn.ModuleDict(
                    {
                        str(i): factory(name, block_out_channels(layer[i]), **kwargs)
                        for i in range(len(layer) - n, len(layer))
                    }
                )
        self.attention_layout = counts
        self.new_module_prefixes = ("attention.",)

    def forward_stage(self, name: str, x: Tensor) -> Tensor:
        if name == "stem":
            for module in self._stem:
                x = getattr(self, module)(x)
            return x
        inserted = self.attention[name] if name in self.attention else None
        for i, block in enumerate(getattr(self, name)):
            x = block(x)
            if inserted is not None and str(i) in inserted:
                x = inserted[str(i)](x)
        return x


def _torchvision_trunk(spec: ResNetSpec, seed_prefix: bool) -> ResNet:
    block: type[BasicBlock | Bottleneck]
    if spec.tv_block == "basic":
        block = BasicBlock
    else:
        block = SeedPrefixBottleneck if seed_prefix else Bottleneck
    assert spec.tv_layers is not None
    trunk = ResNet(block, list(spec.tv_layers), groups=spec.groups, width_per_group=spec.width_per_group)
    if seed_prefix:
        trunk.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    if spec.ibn_a:
        apply_ibn_a([trunk.layer1, trunk.layer2, trunk.layer3])
    return trunk


def default_weights(name: str) -> WeightFile | None:
    """The library file ``pretrained=True`` loads for ``name`` (``None``: no standard weights exist)."""
    spec = SPECS[name]
    if spec.weight_file is not None:
        return spec.weight_file
    if spec.tv_weights is not None:
        url = getattr(torchvision.models, spec.tv_weights).IMAGENET1K_V1.url
        return WeightFile(url.rsplit("/", 1)[-1], url)
    assert spec.timm_name is not None
    return timm_weights(spec.timm_name)


def timm_weights(model_name: str) -> WeightFile | None:
    """timm's default pretrained file for ``model_name``: its release URL, else the Hugging Face hub's
    ``pytorch_model.bin`` (stored locally as ``<model>.<tag>.pth``); ``None`` if timm has no weights."""
    import timm  # lazy: importing timm costs about a second

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        return None
    if cfg.url:
        return WeightFile(cfg.url.rsplit("/", 1)[-1], cfg.url)
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id
        return WeightFile(f"{repo.rsplit('/', 1)[-1]}.pth", f"https://huggingface.co/{repo}/resolve/main/pytorch_model.bin")
    return None


def build_resnet(
    name: str,
    pretrained: Pretrained = False,
    last_stride: int = 1,
    attention: str | None = None,
    attention_layout: Sequence[int] | None = None,
    *,
    attention_kwargs: Mapping[str, Any] | None = None,
    attention_factory: AttentionFactory | None = None,
    seed_prefix_resnet: bool = False,
) -> ResNetBackbone:
    """Build the ResNet-family backbone ``name`` (see the module docstring for names and options).

    ``pretrained``: ``False``; ``True`` for the library's ImageNet file (found in ``weights_dir()`` or
    downloaded; offline a ``FileNotFoundError`` says which file to put where); or a path to a state dict in
    the library's key layout (``fc.*`` is dropped, attention is reported as new, anything else missing or
    mis-shaped is an error). The report is on ``.load_report``.
    """
    if name not in SPECS:
        raise ValueError(f"unknown ResNet-family backbone {name!r}; valid: {', '.join(SPECS)}")
    spec = SPECS[name]
    if spec.timm_name is not None:
        if seed_prefix_resnet:
            raise ValueError(
                f"seed_prefix_resnet reproduces the seed's torchvision-style ResNet; {name!r} is a timm model"
            )
        import timm  # lazy: importing timm costs about a second

        trunk = timm.create_model(spec.timm_name, pretrained=False)
        stem: tuple[str, ...] = ("conv1", "bn1", "act1", "maxpool")
    else:
        trunk = _torchvision_trunk(spec, seed_prefix_resnet)
        stem = ("conv1", "bn1", "relu", "maxpool")
    model = ResNetBackbone(
        trunk,
        stem,
        last_stride=last_stride,
        attention=attention,
        attention_layout=attention_layout,
        default_layout=spec.layout,
        attention_kwargs=attention_kwargs,
        attention_factory=attention_factory,
    )
    load_backbone_weights(model, pretrained, default_weights(name) if pretrained is True else None, name)
    return model


RESNET_BUILDERS: dict[str, Callable[..., ResNetBackbone]] = {
    name: functools.partial(build_resnet, name) for name in SPECS
}
