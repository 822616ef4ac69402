"""OSNet and OSNet-AIN backbones (omni-scale networks), key-compatible with torchreid's checkpoints.

References:
    Zhou, Yang, Cavallaro, Xiang, "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019
    (arXiv 1905.00953) -- OSNet x1.0 / x0.75 / x0.5 / x0.25 (and the IBN variant).
    Zhou, Yang, Cavallaro, Xiang, "Learning Generalisable Omni-Scale Representations for Person
    Re-Identification", TPAMI 2021 (arXiv 1910.06827) -- OSNet-AIN, instance normalisation found by
    architecture search.

Written for reidkit; module for module it reproduces the parameter names and shapes of
``KaiyangZhou/deep-person-reid: torchreid/models/osnet.py`` and ``osnet_ain.py`` so that their ImageNet and
re-ID checkpoints load with no missing backbone key. The backbone stops at ``conv5`` (the final feature map,
before global pooling); torchreid's ``fc`` embedding and ``classifier`` are not part of it, and
:func:`reidkit.models.weights.load_pretrained` reports them as dropped.

The ideas, in formulas:

* **Lite 3x3** (:class:`LightConv3x3`): a 1x1 *linear* conv followed by a depthwise 3x3 conv, then BN and ReLU,
  ``y = ReLU(BN(DW3x3(W_1x1 x)))``: C*C + 9*C weights instead of 9*C*C.
* **Omni-scale residual** (:class:`OSBlock`): T = 4 streams of t = 1..4 stacked lite 3x3 layers (receptive
  fields 3, 5, 7, 9) on the bottleneck x' = Conv1x1(x); the **unified aggregation gate** G -- one small network
  shared by all streams -- weighs each stream channel-wise from its own content:
  ``x~ = sum_t G(x'^t) (.) x'^t``, ``G(z) = sigmoid(W2 ReLU(W1 GAP(z) + b1) + b2)``,
  ``y = ReLU(x + Conv1x1Linear(x~))`` (the shortcut is a Conv1x1Linear when the widths differ).
* **OSNet-AIN**: affine instance normalisation (IN) in the stem and *inside* the residual branch of some
  blocks (:class:`OSBlockINin`: ``y = ReLU(x + IN(Conv1x1(x~)))``), placed where the search put it (§1.3).

Stage layout (256x128 input, x1.0): conv1 (7x7 s2, 64, 128x64) -> maxpool (3x3 s2, 64x32) -> conv2 (2 blocks,
256, + transition 1x1 conv and 2x2 avg-pool, 32x16) -> conv3 (2 blocks, 384, + transition, 16x8) -> conv4
(2 blocks, 512, 16x8) -> conv5 (1x1 conv, 512, 16x8). In OSNet-AIN the transitions are separate stages
``pool2`` and ``pool3``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.models.backbones.base import Backbone, Pretrained, WeightFile, load_backbone_weights

__all__ = [
    "OSNET_BUILDERS",
    "ChannelGate",
    "Conv1x1",
    "Conv1x1Linear",
    "ConvLayer",
    "LightConv3x3",
    "LightConvStream",
    "OSBlock",
    "OSBlockAIN",
    "OSBlockINin",
    "OSNet",
    "OSNetAIN",
    "osnet_ain_x0_25",
    "osnet_ain_x0_5",
    "osnet_ain_x0_75",
    "osnet_ain_x1_0",
    "osnet_ibn_x1_0",
    "osnet_x0_25",
    "osnet_x0_5",
    "osnet_x0_75",
    "osnet_x1_0",
]

AttentionFactory = Callable[..., nn.Module]

#: Channels (c0, c1, c2, c3) = outputs of conv1, conv2, conv3, conv4/conv5, per width (paper Table 1, §1.2).
WIDTHS: dict[str, tuple[int, int, int, int]] = {
    "x1_0": (64, 256, 384, 512),
    "x0_75": (48, 192, 288, 384),
    "x0_5": (32, 128, 192, 256),
    "x0_25": (16, 64, 96, 128),
}

# torchreid's model-zoo ImageNet files (its cache names them "<model>_imagenet.pth"); Google Drive ids.
_DRIVE = "https://drive.google.com/uc?export=download&id="
IMAGENET_URLS: dict[str, str] = {
    "osnet_x1_0": _DRIVE + "1LaG1EJpHrxdAxKnSCJ_i0u-nbxSAeiFY",
    "osnet_x0_75": _DRIVE + "1uwA9fElHOk3ZogwbeY5GkLI6QPTX70Hq",
    "osnet_x0_5": _DRIVE + "16DGLbZukvVYgINws8u8deSaOqjybZ83i",
    "osnet_x0_25": _DRIVE + "1rb8UN5ZzPKRc_xvtHlyDh-cSz88YX9hs",
    "osnet_ibn_x1_0": _DRIVE + "1sr90V6irlYYDd4_4ISU2iruoRG8J__6l",
    "osnet_ain_x1_0": _DRIVE + "1-CaioD9NaqbHK_kzSMW8VE4_3KcsRjEo",
    "osnet_ain_x0_75": _DRIVE + "1apy0hpsMypqstfencdH-jKIUEFOW4xoM",
    "osnet_ain_x0_5": _DRIVE + "1KusKvEYyKGDTUBVRxRiz55G31wkihB6l",
    "osnet_ain_x0_25": _DRIVE + "1SxQt2AvmEcgWNhaRb2xC4rP6ZwVDP0Wt",
}


def imagenet_filename(name: str) -> str:
    """The ImageNet checkpoint's file name, as torchreid caches it: ``osnet_x1_0_imagenet.pth``."""
    return f"{name}_imagenet.pth"


# --------------------------------------------------------------------------------------------------------
# Basic layers (all convolutions bias-free, except the gate's)
# --------------------------------------------------------------------------------------------------------
class ConvLayer(nn.Module):
    """Stem: k x k conv -> BN (or affine InstanceNorm when ``instance_norm``) -> ReLU. Keys ``conv``, ``bn``
    (torchreid keeps the name ``bn`` for the InstanceNorm too)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, instance_norm: bool = False) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.InstanceNorm2d(out_channels, affine=True) if instance_norm else nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class Conv1x1(nn.Module):
    """1x1 conv -> BN -> ReLU. Keys ``conv``, ``bn``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class Conv1x1Linear(nn.Module):
    """1x1 conv -> BN, no activation (``bn=False``: the bare conv, as in :class:`OSBlockINin`'s ``conv3``)."""

    def __init__(self, in_channels: int, out_channels: int, bn: bool = True) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if bn else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)


class LightConv3x3(nn.Module):
    """Lite 3x3: ``ReLU(BN(DW3x3(W_1x1 x)))`` -- a linear 1x1 conv (C -> C) then a depthwise 3x3 conv
    (groups = C, padding 1). Keys ``conv1``, ``conv2``, ``bn``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class LightConvStream(nn.Module):
    """``depth`` lite 3x3 layers in sequence (OSNet-AIN's stream t; receptive field 2t + 1). Key ``layers``."""

    def __init__(self, in_channels: int, out_channels: int, depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"a stream needs depth >= 1, got {depth}")
        self.out_channels = out_channels
        self.layers = nn.Sequential(
            LightConv3x3(in_channels, out_channels),
            *(LightConv3x3(out_channels, out_channels) for _ in range(depth - 1)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ChannelGate(nn.Module):
    """Unified aggregation gate: ``G(z) = sigmoid(W2 ReLU(W1 GAP(z) + b1) + b2)``, returns ``z * G(z)``.

    W1: C -> floor(C / 16) and W2: back to C are 1x1 convs with bias (keys ``fc1``, ``fc2``). One instance is
    shared by the four streams of a block, so the gate's weights see every scale.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"ChannelGate needs channels >= reduction ({reduction}), got {channels}")
        self.out_channels = channels
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def gates(self, z: Tensor) -> Tensor:
        """The (B, C, 1, 1) gate values in (0, 1)."""
        return torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(z, 1)))))

    def forward(self, z: Tensor) -> Tensor:
        return z * self.gates(z)


def _bottleneck(out_channels: int, reduction: int = 4) -> int:
    if out_channels % reduction:
        raise ValueError(f"an OSNet block's width must be divisible by {reduction}, got {out_channels}")
    return out_channels // reduction


# --------------------------------------------------------------------------------------------------------
# Omni-scale blocks
# --------------------------------------------------------------------------------------------------------
class OSBlock(nn.Module):
    """Omni-scale residual block, ``osnet.py`` layout: ``y = ReLU(shortcut(x) + conv3(sum_t G(x'^t) x'^t))``.

    mid = out / 4; ``conv1`` = Conv1x1(in -> mid); streams ``conv2a`` (1 lite 3x3), ``conv2b`` (2), ``conv2c``
    (3), ``conv2d`` (4); shared ``gate``; ``conv3`` = Conv1x1Linear(mid -> out); ``downsample`` =
    Conv1x1Linear(in -> out) when in != out (else identity). ``instance_norm`` (OSNet-IBN's conv2 blocks): an
    affine InstanceNorm ``IN`` on the sum, before the final ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, instance_norm: bool = False) -> None:
        super().__init__()
        mid = _bottleneck(out_channels)
        self.out_channels = out_channels
        self.conv1 = Conv1x1(in_channels, mid)
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(4)))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_channels)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if instance_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.conv1(x)
        streams = (self.conv2a, self.conv2b, self.conv2c, self.conv2d)
        x2 = sum(self.gate(stream(x1)) for stream in streams)
        out = self.conv3(x2) + (x if self.downsample is None else self.downsample(x))
        if self.IN is not None:
            out = self.IN(out)
        return F.relu(out)


class OSBlockAIN(nn.Module):
    """Omni-scale residual block, ``osnet_ain.py`` layout (no IN): the same computation as :class:`OSBlock`
    with the streams held as ``conv2`` = ModuleList of four :class:`LightConvStream` of depth 1..4 (keys
    ``conv2.<t-1>.layers.<i>.*``); gated stream outputs are summed in stream order."""

    instance_norm = False

    def __init__(self, in_channels: int, out_channels: int, streams: int = 4) -> None:
        super().__init__()
        mid = _bottleneck(out_channels)
        self.out_channels = out_channels
        self.conv1 = Conv1x1(in_channels, mid)
        self.conv2 = nn.ModuleList(LightConvStream(mid, mid, t) for t in range(1, streams + 1))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_channels, bn=not self.instance_norm)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        if self.instance_norm:
            self.IN = nn.InstanceNorm2d(out_channels, affine=True)

    def residual(self, x: Tensor) -> Tensor:
        x1 = self.conv1(x)
        x2 = self.gate(self.conv2[0](x1))
        for stream in self.conv2[1:]:
            x2 = x2 + self.gate(stream(x1))
        return self.conv3(x2)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.residual(x) + identity)


class OSBlockINin(OSBlockAIN):
    """OSNet-AIN block with IN inside the residual branch: ``conv3`` is a bare 1x1 conv (no BN) followed by an
    affine InstanceNorm ``IN``: ``y = ReLU(shortcut(x) + IN(W_1x1 sum_t G(x'^t) x'^t))``."""

    instance_norm = True

    def residual(self, x: Tensor) -> Tensor:
        return self.IN(super().residual(x))


# --------------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------------
def _derived_channels(module: nn.Module) -> int | None:
    """Output channels of ``module`` from the layers it holds: its own ``out_channels``, else that of its last
    child that has one; ``None`` for a channel-preserving module without any (pooling)."""
    own = getattr(module, "out_channels", None)
    if isinstance(own, int):
        return own
    for child in reversed(list(module.children())):
        found = _derived_channels(child)
        if found is not None:
            return found
    return None


def _transition(channels: int) -> nn.Sequential:
    """Conv1x1 then 2x2 average pool, stride 2 (keys ``0.conv``, ``0.bn``)."""
    return nn.Sequential(Conv1x1(channels, channels), nn.AvgPool2d(2, stride=2))


class _OSNetBackbone(Backbone):
    """Shared machinery: stage order, ``last_stride``, initialisation, attention insertion.

    Subclasses build their stages as attributes, then call :meth:`_finish` with the stage names in order.
    ``forward`` / ``featuremaps`` come from :class:`~reidkit.models.backbones.base.Backbone` and run
    :meth:`forward_stage` over ``stage_names``.
    """

    default_attention_layout: tuple[str, ...] = ()

    def _finish(
        self,
        stages: Sequence[str],
        last_stride: int,
        attention: str | None,
        attention_layout: Sequence[str] | None,
        attention_kwargs: Mapping[str, Any] | None,
        attention_factory: AttentionFactory | None,
    ) -> None:
        stages = list(stages)
        if last_stride not in (1, 2) or isinstance(last_stride, bool):
            raise ValueError(
                f"last_stride must be 1 or 2 for OSNet, got {last_stride!r}. OSNet has no strided last stage: "
                "its output stride is 16 (16x8 map at 256x128), what ResNet gives with last_stride=1; "
                "last_stride=2 adds a parameter-free 2x2 average pool after conv4 (output stride 32, 8x4 map)"
            )
        self.last_stride = last_stride
        if last_stride == 2:
            self.pool4 = nn.AvgPool2d(2, stride=2)
            stages.insert(stages.index("conv4") + 1, "pool4")
        self.stage_names: tuple[str, ...] = tuple(stages)
        self._init_params()  # before attention: inserted modules keep their own init

        self.stage_channels: dict[str, int] = {}
        channels = 3
        for name in self.stage_names:
            channels = _derived_channels(getattr(self, name)) or channels
            self.stage_channels[name] = channels
        self.out_channels: int = self.stage_channels[self.stage_names[-1]]

        self.attention = nn.ModuleDict()
        if attention is None:
            if attention_layout is not None or attention_kwargs:
                raise ValueError("attention_layout / attention_kwargs given without attention=<name>")
        else:
            layout = self.default_attention_layout if attention_layout is None else tuple(attention_layout)
            unknown = [s for s in layout if s not in self.stage_names]
            if unknown or not layout or len(set(layout)) != len(layout):
                raise ValueError(
                    f"attention_layout must name distinct stages of {type(self).__name__} out of "
                    f"{list(self.stage_names)}; got {list(layout)}"
                )
            factory = attention_factory if attention_factory is not None else _default_attention_factory()
            for stage in layout:
                self.attention[stage] = factory(attention, self.stage_channels[stage], **dict(attention_kwargs or {}))
        #: module prefixes the loader must treat as new (not in any published checkpoint)
        self.new_module_prefixes: tuple[str, ...] = ("attention.",) if len(self.attention) else ()
        self.load_report = None

    def _init_params(self) -> None:
        """The paper's init (torchreid ``_init_params``): convs kaiming-normal (fan_out, ReLU), biases 0;
        BN and affine IN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stage(self, name: str, x: Tensor) -> Tensor:
        """Stage ``name`` then its attention module, if any. ``forward`` chains the stages to the final map
        (conv5 output, before global pooling: (B, out_channels, H/16, W/16)); ``featuremaps`` returns every
        stage's output by name (``conv1``, ``maxpool``, ``conv2``, ..., ``conv5``), after its attention."""
        x = getattr(self, name)(x)
        if name in self.attention:
            x = self.attention[name](x)
        return x


def _default_attention_factory() -> AttentionFactory:
    from reidkit.models.attention import build_attention

    return build_attention


class OSNet(_OSNetBackbone):
    """OSNet backbone (``torchreid/models/osnet.py`` layout), ending at ``conv5``.

    Args:
        channels: (c0, c1, c2, c3), see :data:`WIDTHS`.
        instance_norm: OSNet-IBN: affine IN in the stem (key ``conv1.bn``) and after the residual sum of
            conv2's blocks.
        last_stride: 1 (published OSNet, output stride 16) or 2 (adds a 2x2 average pool after conv4).
        attention: name for ``build_attention`` or None; inserted after each stage of ``attention_layout``
            (default: after conv2 and after conv3, each including its transition; §2).
        attention_layout: stage names to insert attention after.
        attention_kwargs: extra keyword arguments for the attention factory.
        attention_factory: ``factory(name, channels, **kw) -> nn.Module``; default
            :func:`reidkit.models.attention.build_attention`.

    Stages: conv1, maxpool, conv2 (blocks 0-1 and transition 2), conv3 (same), conv4 (blocks 0-1),
    [pool4 when last_stride=2], conv5.
    """

    default_attention_layout = ("conv2", "conv3")

    def __init__(
        self,
        channels: Sequence[int] = WIDTHS["x1_0"],
        *,
        instance_norm: bool = False,
        last_stride: int = 1,
        attention: str | None = None,
        attention_layout: Sequence[str] | None = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        attention_factory: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.conv1 = ConvLayer(3, c0, 7, stride=2, padding=3, instance_norm=instance_norm)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Sequential(
            OSBlock(c0, c1, instance_norm), OSBlock(c1, c1, instance_norm), _transition(c1)
        )
        self.conv3 = nn.Sequential(OSBlock(c1, c2), OSBlock(c2, c2), _transition(c2))
        self.conv4 = nn.Sequential(OSBlock(c2, c3), OSBlock(c3, c3))
        self.conv5 = Conv1x1(c3, c3)
        self._finish(("conv1", "maxpool", "conv2", "conv3", "conv4", "conv5"), last_stride, attention,
                     attention_layout, attention_kwargs, attention_factory)


class OSNetAIN(_OSNetBackbone):
    """OSNet-AIN backbone (``torchreid/models/osnet_ain.py`` layout), ending at ``conv5``.

    Block pattern (searched, TPAMI 2021): conv2 [INin, INin], conv3 [plain, INin], conv4 [INin, plain];
    transitions ``pool2`` / ``pool3`` are stages of their own; the stem uses affine InstanceNorm
    (``conv1_in=True``; ``conv1_in=False`` reproduces the seed's BatchNorm stem, whose running statistics are
    then reported as new when loading AIN weights). Other arguments as :class:`OSNet`; default attention points:
    after pool2 and after pool3.

    Stages: conv1, maxpool, conv2, pool2, conv3, pool3, conv4, [pool4 when last_stride=2], conv5.
    """

    default_attention_layout = ("pool2", "pool3")

    def __init__(
        self,
        channels: Sequence[int] = WIDTHS["x1_0"],
        *,
        conv1_in: bool = True,
        last_stride: int = 1,
        attention: str | None = None,
        attention_layout: Sequence[str] | None = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        attention_factory: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.conv1 = ConvLayer(3, c0, 7, stride=2, padding=3, instance_norm=conv1_in)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Sequential(OSBlockINin(c0, c1), OSBlockINin(c1, c1))
        self.pool2 = _transition(c1)
        self.conv3 = nn.Sequential(OSBlockAIN(c1, c2), OSBlockINin(c2, c2))
        self.pool3 = _transition(c2)
        self.conv4 = nn.Sequential(OSBlockINin(c2, c3), OSBlockAIN(c3, c3))
        self.conv5 = Conv1x1(c3, c3)
        self._finish(("conv1", "maxpool", "conv2", "pool2", "conv3", "pool3", "conv4", "conv5"), last_stride,
                     attention, attention_layout, attention_kwargs, attention_factory)
        if not conv1_in:  # BN stem: its running statistics exist in no AIN checkpoint
            self.new_module_prefixes += tuple(f"conv1.bn.{b}" for b in ("running_mean", "running_var",
                                                                         "num_batches_tracked"))


# --------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------
def _load(model: _OSNetBackbone, name: str, pretrained: Pretrained) -> _OSNetBackbone:
    """``pretrained``: False -> keep the init; True -> torchreid's ImageNet file ``<name>_imagenet.pth`` via
    :func:`~reidkit.models.weights.resolve_weights` (local copy first, else download; a failure says which
    file to put where); a path -> that file. The report is kept as ``model.load_report``."""
    load_backbone_weights(model, pretrained, WeightFile(imagenet_filename(name), IMAGENET_URLS[name]), name)
    return model


def _osnet(name: str, width: str, pretrained: Pretrained, last_stride: int, attention: str | None,
           attention_layout: Sequence[str] | None, **kw: Any) -> OSNet:
    model = OSNet(WIDTHS[width], last_stride=last_stride, attention=attention,
                  attention_layout=attention_layout, **kw)
    return _load(model, name, pretrained)


def _osnet_ain(name: str, width: str, pretrained: Pretrained, last_stride: int, attention: str | None,
               attention_layout: Sequence[str] | None, **kw: Any) -> OSNetAIN:
    model = OSNetAIN(WIDTHS[width], last_stride=last_stride, attention=attention,
                     attention_layout=attention_layout, **kw)
    return _load(model, name, pretrained)


_BUILDER_DOC = """{title} backbone ({ref}); final map of {c} channels (``out_channels``).

    Args:
        pretrained: False (paper init), True (torchreid's ImageNet file ``{name}_imagenet.pth`` from
            :func:`reidkit.models.weights.weights_dir`, downloaded if absent; offline it fails saying where to
            put the file) or a checkpoint path (ImageNet or re-ID; ``fc``/``classifier`` are dropped and reported).
        last_stride: 1 (published network, output stride 16: 16x8 at 256x128) or 2 (extra 2x2 average pool
            after conv4: 8x4). Other values are an error: OSNet has no strided last stage to change.
        attention: attention name (``build_attention``) inserted after the stages of ``attention_layout``
            (default {layout}); reported as new modules when loading.
        attention_layout: stage names to insert attention after.
        **kw: {extra}``attention_kwargs``, ``attention_factory``.
    """


def _document(fn: Callable, title: str, ref: str, name: str, width: str, ain: bool) -> Callable:
    fn.__doc__ = _BUILDER_DOC.format(
        title=title, ref=ref, name=name, c=WIDTHS[width][3],
        layout="pool2, pool3" if ain else "conv2, conv3 (each with its transition)",
        extra="``conv1_in`` (True; False = the seed's BN stem), " if ain else "",
    )
    return fn


_OSNET_REF = "Zhou et al., ICCV 2019, arXiv 1905.00953"
_AIN_REF = "Zhou et al., TPAMI 2021, arXiv 1910.06827"


def osnet_x1_0(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
               attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNet:
    return _osnet("osnet_x1_0", "x1_0", pretrained, last_stride, attention, attention_layout, **kw)


def osnet_x0_75(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
                attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNet:
    return _osnet("osnet_x0_75", "x0_75", pretrained, last_stride, attention, attention_layout, **kw)


def osnet_x0_5(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
               attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNet:
    return _osnet("osnet_x0_5", "x0_5", pretrained, last_stride, attention, attention_layout, **kw)


def osnet_x0_25(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
                attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNet:
    return _osnet("osnet_x0_25", "x0_25", pretrained, last_stride, attention, attention_layout, **kw)


def osnet_ibn_x1_0(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
                   attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNet:
    return _osnet("osnet_ibn_x1_0", "x1_0", pretrained, last_stride, attention, attention_layout,
                  instance_norm=True, **kw)


def osnet_ain_x1_0(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
                   attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNetAIN:
    return _osnet_ain("osnet_ain_x1_0", "x1_0", pretrained, last_stride, attention, attention_layout, **kw)


def osnet_ain_x0_75(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
                    attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNetAIN:
    return _osnet_ain("osnet_ain_x0_75", "x0_75", pretrained, last_stride, attention, attention_layout, **kw)


def osnet_ain_x0_5(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
                   attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNetAIN:
    return _osnet_ain("osnet_ain_x0_5", "x0_5", pretrained, last_stride, attention, attention_layout, **kw)


def osnet_ain_x0_25(pretrained: Pretrained = False, last_stride: int = 1, attention: str | None = None,
                    attention_layout: Sequence[str] | None = None, **kw: Any) -> OSNetAIN:
    return _osnet_ain("osnet_ain_x0_25", "x0_25", pretrained, last_stride, attention, attention_layout, **kw)


for _fn, _width in ((osnet_x1_0, "x1_0"), (osnet_x0_75, "x0_75"), (osnet_x0_5, "x0_5"), (osnet_x0_25, "x0_25")):
    _document(_fn, f"OSNet {_width.replace('_', '.')}", _OSNET_REF, _fn.__name__, _width, ain=False)
_document(osnet_ibn_x1_0, "OSNet-IBN x1.0 (IN in the stem and conv2's blocks)", _OSNET_REF, "osnet_ibn_x1_0",
          "x1_0", ain=False)
for _fn, _width in ((osnet_ain_x1_0, "x1_0"), (osnet_ain_x0_75, "x0_75"), (osnet_ain_x0_5, "x0_5"),
                    (osnet_ain_x0_25, "x0_25")):
    _document(_fn, f"OSNet-AIN {_width.replace('_', '.')}", _AIN_REF, _fn.__name__, _width, ain=True)
del _fn, _width

#: Builder by backbone name, for ``build_backbone``.
OSNET_BUILDERS: dict[str, Callable[..., _OSNetBackbone]] = {
    fn.__name__: fn
    for fn in (osnet_x1_0, osnet_x0_75, osnet_x0_5, osnet_x0_25, osnet_ibn_x1_0,
               osnet_ain_x1_0, osnet_ain_x0_75, osnet_ain_x0_5, osnet_ain_x0_25)
}
