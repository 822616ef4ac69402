r"""LightMBN: a lightweight multi-branch re-ID network on an OSNet x1.0 trunk.

Herzog, Ji, Teepe, Hörmann, Gilg, Rigoll, "Lightweight Multi-Branch Network for Person Re-Identification",
ICIP 2021 (arXiv 2101.10774); the published model is ``LMBN_n`` of ``jixunbo/LightMBN``. This is reidkit's own
implementation of that architecture (``variant="lmbn"``, the default) and of the variant the seed toolbox
trained for its headline result (``variant="seed"``, ``components.md`` §13.2).

Architecture (shapes for a 384×128 input; 256×128 gives 32×16 and 16×8)::

    image (3×384×128)
      └─ trunk: OSNet conv1 → maxpool → conv2 (+ transition) → conv3[0]            384×48×16
           ├─ global branch  ┐ each an independent deep copy of OSNet             512×24×8
           ├─ part branch    ├ conv3[1:] (OSBlock + transition) → conv4 → conv5    512×24×8
           └─ channel branch ┘                                                     512×24×8

* **global**: drop bottleneck ``b = OSBlock(512→512)(g)``; ``f_glo = avg-pool(b)``; **Top-DropBlock** (training
  only, :class:`~reidkit.models.dropblock.TopDropBlock`) zeroes the round(0.33·H) most activated rows of ``b``,
  ``f_drop = max-pool(b_drop)``. In eval the drop is the identity, so ``f_drop = max-pool(b)``.
* **part**: ``f_pg = max-pool(p)``; average pooling to 2×1 gives the top and bottom halves ``f_p1``, ``f_p2``.
* **channel**: ``avg-pool(c)`` ∈ ℝ⁵¹², split into two 256-d halves; **one shared** [1×1 conv 256→512 (no bias) →
  BN → ReLU] maps each half to ``f_c1``, ``f_c2``.
* **heads** (:class:`LightMBNHead`): glo, drop, pg, p1, p2 use "BNNeck3" = 1×1 conv 512→512 (no bias) → f
  (pre-BN) → BN1d (weight 1, bias frozen at 0) → Linear(512, K, no bias, N(0, 0.001)); c1, c2 use "BNNeck"
  = BN1d → Linear (no reduction conv).

Why max pooling for the drop and part-global features (Batch DropBlock, Dai et al., ICCV 2019, arXiv
1811.07130, whose dropping branch Top-DB-Net and LMBN follow): once the most activated rows are zeroed, the
average would count the zeros (scaling the feature by the kept fraction, differently per image) and mix strong and
weak responses, while the maximum ignores the dropped rows and makes the branch find the strongest *remaining*
evidence per channel; LMBN uses the same max pooling for the whole part map. The undropped global feature keeps
avg pooling, as in LMBN's code.

**Outputs.** Training: :class:`LightMBNTrainOutput` with 7 logit sets (glo, drop, pg, p1, p2, c1, c2) for the
cross-entropy terms and the 3 pre-BN metric features (glo, drop, pg) for the metric loss. Eval: the 7 post-BN
512-d vectors, each L2-normalised **separately**, flattened to (B, 3584) in the order glo, drop, pg, p1, p2, c1,
c2. For two such vectors ``q·g = Σ_{k=1..7} cos(q_k, g_k)`` (‖q‖² = 7), so LMBN's distance ``1 − q·g`` ranks by
the sum of the seven per-branch cosines (values in [−6, 8]; the same ranking as the cosine distance of the whole
vectors, 1 − q·g/7), each head weighing equally whatever its raw norm. Flip TTA:
:meth:`LightMBN.extract_features` with ``flip=True`` adds the pre-normalisation features of the image and its
mirror before normalising; :meth:`LightMBN.branch_features` exposes the pre-normalisation (B, 7, 512) stack.

**Initialisation** (as LMBN): the trunk and branches come from one OSNet x1.0 (OSNet's Kaiming fan-out init, or
the ImageNet weights), the branches being deep copies so they start identical; the drop bottleneck, the 1×1
reductions and the shared channel conv keep PyTorch's default init (LMBN's Kaiming helper reaches only the BN
layers, and its call on the ``shared`` container is a no-op); every BN has weight 1, bias 0; classifiers
N(0, 0.001).

**Parameters** (K classes, D = 512), 9,152,280 for K = 751 (the paper's 9.15 M): trunk (conv1, conv2,
conv3[0]) 509,614; each branch (conv3[1:], conv4, conv5) 1,396,214, three copies 4,188,642 (trunk + one branch
= OSNet x1.0 without its head, 1,905,828); drop bottleneck OSBlock(512, 512) 312,456; five 1×1 reductions
5·512·512 = 1,310,720; shared channel conv 256·512 + 2·512 = 132,096; seven BNNecks 7·2·512 = 7,168 (the 3,584
frozen biases included); seven classifiers 7·512·K = 2,691,584 for K = 751. See
:meth:`LightMBN.parameter_breakdown`.

**The seed's variant** (``variant="seed"``, options in :class:`LightMBNOptions`): GlobalContext with scale fusion
(ratio 1/16) after conv2 in the trunk and after conv3 in each branch; avg pooling for the drop and part-global
features; heads "seed_gem_bnhead" = 1×1 conv → GeM-P (learnable p per head) on the 1×1 pooled vector (which is
just ``clamp(x, 1e-6)``: a hidden ReLU on both the metric and the retrieval feature) → BatchNorm2d (bias frozen,
weight N(1, 0.02)) → Linear (no bias, PyTorch default init); no CE on the drop logits (``ce_on_drop=False``:
an attribute for the loss, the logits are still produced); eval features concatenated in the seed's order
(drop, glo, c1, c2, p1, p2, pg) without per-branch normalisation (cosine of the whole 3,584-d vector; flip TTA
averages the two passes). Parameters for K = 751: 9,218,859 (the seed's 9.22 M): LMBN's 9,152,280 + 66,572
GlobalContext (8,753 in the trunk at 256 channels, 19,273 in each branch at 384) + 7 GeM exponents. The shared
channel conv keeps PyTorch's default init in both variants: the seed calls its Kaiming helper on the ``Conv``
wrapper itself, whose class name matches none of the helper's cases (``Linear``, ``Conv2d``, ``BatchNorm2d``),
so, as in LMBN, the call changes nothing.
"""
from __future__ import annotations

import copy
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.models.attention import build_attention
from reidkit.models.backbones.osnet import IMAGENET_URLS, WIDTHS, Conv1x1, OSBlock, OSNet, imagenet_filename
from reidkit.models.dropblock import TopDropBlock
from reidkit.models.neck import BNNeck
from reidkit.models.pooling import GeM
from reidkit.models.weights import LoadReport, load_pretrained, read_checkpoint, resolve_weights

__all__ = [
    "BRANCH_NAMES",
    "METRIC_BRANCHES",
    "SEED_FEATURE_ORDER",
    "VARIANTS",
    "BranchTensors",
    "LightMBN",
    "LightMBNHead",
    "LightMBNOptions",
    "LightMBNTrainOutput",
    "MetricFeatures",
]

logger = logging.getLogger(__name__)

#: The seven heads in LMBN's order (training logits and eval features).
BRANCH_NAMES: tuple[str, ...] = ("glo", "drop", "pg", "p1", "p2", "c1", "c2")
#: Heads whose pre-BN feature goes to the metric loss.
METRIC_BRANCHES: tuple[str, ...] = ("glo", "drop", "pg")
#: The seed toolbox's concatenation order of the eval features.
SEED_FEATURE_ORDER: tuple[str, ...] = ("drop", "glo", "c1", "c2", "p1", "p2", "pg")
#: Branch copies of OSNet conv3[1:] → conv4 → conv5, in the order they are built.
BRANCH_MODULES: tuple[str, ...] = ("global_branch", "part_branch", "channel_branch")
#: OSNet stages after which attention can be inserted: conv2 in the trunk, the others in each branch.
TRUNK_ATTENTION_STAGES = ("conv2",)
BRANCH_ATTENTION_STAGES = ("conv3", "conv4", "conv5")
BACKBONE_NAME = "osnet_x1_0"


class BranchTensors(NamedTuple):
    """One tensor per head, in LMBN's order; iterable, indexable and addressable by name."""

    glo: Tensor
    drop: Tensor
    pg: Tensor
    p1: Tensor
    p2: Tensor
    c1: Tensor
    c2: Tensor


class MetricFeatures(NamedTuple):
    """The pre-BN features the metric loss sees: global, dropped global, part-global; each (B, D)."""

    glo: Tensor
    drop: Tensor
    pg: Tensor


class LightMBNTrainOutput(NamedTuple):
    """Training output: ``logits`` (7 × (B, K), :class:`BranchTensors`) and ``features`` (3 × (B, D) pre-BN,
    :class:`MetricFeatures`). Which logits take a cross-entropy term is the model's ``ce_branches``."""

    logits: BranchTensors
    features: MetricFeatures


@dataclass(frozen=True)
class LightMBNOptions:
    """Every switch between the faithful LMBN (the defaults) and the seed's variant (``VARIANTS["seed"]``).

    Attributes:
        feat_dim: D, width of the reductions, the shared channel conv and every head (LMBN ``--feats`` 512).
        drop_ratio: fraction of rows Top-DropBlock zeroes (0.33).
        attention: ``None`` (LMBN) or a :func:`~reidkit.models.attention.build_attention` name (seed: ``"gc"``).
        attention_layout: OSNet stages to insert it after: ``"conv2"`` (trunk, after its transition) and any of
            ``"conv3"`` (after the transition), ``"conv4"``, ``"conv5"`` (one copy in each branch).
        attention_kwargs: options of the attention module (seed: ``{"fusion": "scale"}``, GlobalContext ratio 1/16
            by default: hidden 16 at 256 channels, 24 at 384).
        drop_pool: pooling of the dropped global map, ``"max"`` (LMBN) or ``"avg"`` (seed).
        part_global_pool: pooling of the whole part map, ``"max"`` (LMBN) or ``"avg"`` (seed).
        head: ``"bnneck"`` (LMBN's BNNeck3/BNNeck) or ``"seed_gem_bnhead"`` (1×1 conv → GeM-P → BN2d with
            N(1, 0.02) weight → Linear with default init).
        ce_on_drop: whether the loss should put a cross-entropy term on the drop logits (LMBN: yes, 7 CE terms;
            seed: no, 6). Only read by the loss (``LightMBN.ce_branches``); the logits exist either way.
        branch_norm: eval features L2-normalised per branch (LMBN) or left raw (seed; cosine on the whole vector).
        feature_order: order of the 7 eval blocks: ``"lmbn"`` (glo, drop, pg, p1, p2, c1, c2) or ``"seed"``
            (drop, glo, c1, c2, p1, p2, pg).
    """

    feat_dim: int = 512
    drop_ratio: float = 0.33
    attention: str | None = None
    attention_layout: tuple[str, ...] = ("conv2", "conv3")
    attention_kwargs: Mapping[str, Any] = field(default_factory=dict)
    drop_pool: Literal["max", "avg"] = "max"
    part_global_pool: Literal["max", "avg"] = "max"
    head: Literal["bnneck", "seed_gem_bnhead"] = "bnneck"
    ce_on_drop: bool = True
    branch_norm: bool = True
    feature_order: Literal["lmbn", "seed"] = "lmbn"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> LightMBNOptions:
        """The options of ``variant`` (a key of :data:`VARIANTS`) with ``overrides`` applied, validated."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown LightMBN variant {variant!r}; valid: {', '.join(VARIANTS)}")
        unknown = sorted(set(overrides) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown LightMBN option(s) {unknown}; valid options: {', '.join(cls.names())}")
        if "attention_layout" in overrides:
            overrides["attention_layout"] = tuple(overrides["attention_layout"])
        if overrides.get("attention", "unset") is None and "attention_kwargs" not in overrides:
            overrides["attention_kwargs"] = {}  # switching the variant's attention off drops its options too
        options = replace(VARIANTS[variant], **overrides)
        options.validate()
        return options

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid option."""
        if isinstance(self.feat_dim, bool) or not isinstance(self.feat_dim, int) or self.feat_dim < 1:
            raise ValueError(f"feat_dim must be a positive int, got {self.feat_dim!r}")
        choices = {"drop_pool": ("max", "avg"), "part_global_pool": ("max", "avg"),
                   "head": ("bnneck", "seed_gem_bnhead"), "feature_order": ("lmbn", "seed")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {getattr(self, name)!r}")
        for name in ("ce_on_drop", "branch_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        allowed = TRUNK_ATTENTION_STAGES + BRANCH_ATTENTION_STAGES
        layout = tuple(self.attention_layout)
        if self.attention is not None and (not layout or any(s not in allowed for s in layout)
                                           or len(set(layout)) != len(layout)):
            raise ValueError(f"attention_layout must name distinct stages out of {list(allowed)}, got {list(layout)}")
        if self.attention is None and self.attention_kwargs:
            raise ValueError("attention_kwargs given without attention=<name>")


#: The umbrella switch: ``"lmbn"`` = the published LMBN_n, ``"seed"`` = the seed toolbox's recipe-A model.
VARIANTS: dict[str, LightMBNOptions] = {
    "lmbn": LightMBNOptions(),
    "seed": LightMBNOptions(
        attention="gc", attention_kwargs=MappingProxyType({"fusion": "scale"}), drop_pool="avg", part_global_pool="avg",
        head="seed_gem_bnhead", ce_on_drop=False, branch_norm=False, feature_order="seed",
    ),
}


class LightMBNHead(nn.Module):
    """One LightMBN head on a pooled vector v ∈ ℝ^C; returns ``(f, f_bn, logits)``.

    ``head="bnneck"`` (LMBN): ``f = W_r v`` (1×1 conv C→D, no bias, default init; skipped when ``reduce`` is
    False, then ``f = v``), ``f_bn = BN1d(f)`` (weight 1, bias frozen at 0, :class:`~reidkit.models.neck.BNNeck`),
    ``logits = W_c f_bn`` (Linear D→K, no bias, N(0, 0.001)).

    ``head="seed_gem_bnhead"`` (seed): ``f = GeM_p(W_r v)`` on the (B, D, 1, 1) map, i.e. ``clamp(W_r v, 1e-6)``
    (learnable p, seed exponent 1/(p + ε)), ``f_bn = BN2d(f)`` (bias frozen, weight N(1, 0.02)),
    ``logits = W_c f_bn`` (Linear, no bias, PyTorch default init).
    """

    def __init__(self, in_channels: int, num_classes: int, feat_dim: int = 512, reduce: bool = True,
                 head: Literal["bnneck", "seed_gem_bnhead"] = "bnneck") -> None:
        super().__init__()
        if not reduce and in_channels != feat_dim:
            raise ValueError(f"a head without reduction needs in_channels == feat_dim, got {in_channels} != {feat_dim}")
        seed = head == "seed_gem_bnhead"
        self.in_channels = in_channels
        self.out_channels = feat_dim
        self.reduction = nn.Conv2d(in_channels, feat_dim, kernel_size=1, bias=False) if reduce else None
        self.gem = GeM(p=3.0, learnable=True, seed_gem_exponent=True) if seed else None
        self.neck = BNNeck(feat_dim, norm="2d" if seed else "1d", bn_weight_init="normal" if seed else "ones")
        self.classifier = nn.Linear(feat_dim, num_classes, bias=False)
        if not seed:
            nn.init.normal_(self.classifier.weight, mean=0.0, std=0.001)

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if v.dim() != 2 or v.shape[1] != self.in_channels:
            raise ValueError(f"LightMBNHead expects (B, {self.in_channels}) pooled vectors, got {tuple(v.shape)}")
        f = v
        if self.reduction is not None:
            f = self.reduction(f[:, :, None, None]).flatten(1)
        if self.gem is not None:
            f = self.gem(f[:, :, None, None])
        f, f_bn = self.neck(f)
        return f, f_bn, self.classifier(f_bn)


def _pool(kind: str) -> nn.Module:
    return nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.AdaptiveAvgPool2d(1)


class LightMBN(nn.Module):
    """LightMBN (Herzog et al., ICIP 2021, arXiv 2101.10774) on OSNet x1.0; see the module docstring.

    Args:
        num_classes: K, training identities.
        variant: ``"lmbn"`` (faithful ``LMBN_n``, default) or ``"seed"`` (the seed toolbox's variant).
        pretrained: ``False``; ``True`` = torchreid's ImageNet OSNet x1.0 file ``osnet_x1_0_imagenet.pth`` found
            through :func:`~reidkit.models.weights.resolve_weights` (local first; offline, an error saying where
            to put it); or a path / state dict in OSNet's key layout. The trunk and **all three branch copies**
            are filled from it; everything else is reported as new (``load_report``).
        **options: fields of :class:`LightMBNOptions`, overriding the variant's value.

    ``forward(x)``: training → :class:`LightMBNTrainOutput`; eval → (B, 7·D) retrieval features.
    """

    def __init__(self, num_classes: int, variant: str = "lmbn",
                 pretrained: bool | str | os.PathLike | Mapping[str, Tensor] = False, **options: Any) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.variant = variant
        self.options = opts = LightMBNOptions.for_variant(variant, **options)
        self.ce_on_drop = opts.ce_on_drop
        self.branch_norm = opts.branch_norm
        self.feat_dim = opts.feat_dim

        osnet = OSNet(WIDTHS["x1_0"])  # OSNet's own init; LMBN builds its parts from one such network
        channels = osnet.stage_channels
        layout = set(opts.attention_layout) if opts.attention is not None else set()
        attention_kwargs = dict(opts.attention_kwargs)

        def attention(stage: str) -> nn.Module:
            return build_attention(opts.attention, channels[stage], **attention_kwargs)  # type: ignore[arg-type]

        trunk: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=osnet.conv1, maxpool=osnet.maxpool, conv2=osnet.conv2)
        if "conv2" in layout:
            trunk["attention_conv2"] = attention("conv2")
        trunk["conv3"] = osnet.conv3[:1]  # keeps the key "0": trunk.conv3.0.* = OSNet conv3.0.*
        self.trunk = nn.Sequential(trunk)

        branch: OrderedDict[str, nn.Module] = OrderedDict()
        for stage, module in (("conv3", osnet.conv3[1:]), ("conv4", osnet.conv4), ("conv5", osnet.conv5)):
            branch[stage] = module  # conv3 keeps the keys "1", "2" of OSNet's conv3
            if stage in layout:
                branch[f"attention_{stage}"] = attention(stage)
        template = nn.Sequential(branch)
        self.global_branch = copy.deepcopy(template)
        self.part_branch = copy.deepcopy(template)
        self.channel_branch = copy.deepcopy(template)
        del osnet, template

        c = channels["conv5"]
        if c % 2:
            raise ValueError(f"the channel branch splits {c} channels in two halves: needs an even width")
        self.out_channels = c
        self.drop_bottleneck = OSBlock(c, c)  # built fresh: PyTorch default init, as in LMBN
        self.top_drop = TopDropBlock(opts.drop_ratio)
        self.drop_pool = _pool(opts.drop_pool)
        self.part_global_pool = _pool(opts.part_global_pool)
        self.channel_conv = Conv1x1(c // 2, opts.feat_dim)  # shared by c1 and c2; default init
        # glo, drop, pg, p1, p2: 1×1 reduction C→D ("BNNeck3"); c1, c2 are already D-dimensional ("BNNeck")
        self.heads = nn.ModuleDict({
            name: LightMBNHead(opts.feat_dim if name in ("c1", "c2") else c, num_classes, opts.feat_dim,
                               reduce=name not in ("c1", "c2"), head=opts.head)
            for name in BRANCH_NAMES
        })

        attention_prefixes = tuple(
            [f"trunk.attention_{s}" for s in TRUNK_ATTENTION_STAGES if s in layout]
            + [f"{b}.attention_{s}" for b in BRANCH_MODULES for s in BRANCH_ATTENTION_STAGES if s in layout])
        #: state-dict prefixes that no OSNet checkpoint has (reported as new by the pretrained load)
        self.new_module_prefixes: tuple[str, ...] = (
            *attention_prefixes, "drop_bottleneck", "channel_conv", "heads")
        self.load_report: LoadReport | None = None
        if pretrained is not False:
            self.load_osnet_weights(pretrained)

    # ------------------------------------------------------------------------------------------ structure
    @property
    def ce_branches(self) -> tuple[str, ...]:
        """Heads whose logits take a cross-entropy term: all 7, or 6 without ``drop`` (``ce_on_drop=False``)."""
        return BRANCH_NAMES if self.ce_on_drop else tuple(n for n in BRANCH_NAMES if n != "drop")

    def ce_logits(self, output: LightMBNTrainOutput) -> list[Tensor]:
        """The logits of :attr:`ce_branches`, in order, from a training output."""
        return [getattr(output.logits, name) for name in self.ce_branches]

    @property
    def feature_dim(self) -> int:
        """Width of the eval feature: 7 · feat_dim (3,584)."""
        return len(BRANCH_NAMES) * self.feat_dim

    @property
    def feature_order(self) -> tuple[str, ...]:
        """Head order of the 7 blocks of the eval feature."""
        return SEED_FEATURE_ORDER if self.options.feature_order == "seed" else BRANCH_NAMES

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameter count per part (trainable or not); the values sum to the model's total.

        Parts: ``trunk``, ``global_branch``, ``part_branch``, ``channel_branch`` (without attention),
        ``attention`` (all inserted modules), ``drop_bottleneck``, ``reductions`` (the five 1×1 convs of the
        heads), ``channel_conv``, ``gem`` (seed heads' exponents), ``necks`` (BN weight and bias of the seven
        heads), ``classifiers``.
        """
        parts = dict.fromkeys(("trunk", *BRANCH_MODULES, "attention", "drop_bottleneck", "reductions",
                               "channel_conv", "gem", "necks", "classifiers"), 0)
        for name, p in self.named_parameters():
            top, rest = name.split(".", 1)
            if ".attention_" in f".{rest}" and top in ("trunk", *BRANCH_MODULES):
                key = "attention"
            elif top == "heads":
                sub = rest.split(".")[1]
                key = {"reduction": "reductions", "gem": "gem", "neck": "necks", "classifier": "classifiers"}[sub]
            else:
                key = top
            parts[key] += p.numel()
        return parts

    # ------------------------------------------------------------------------------------------ loading
    def load_osnet_weights(self, source: bool | str | os.PathLike | Mapping[str, Tensor]) -> LoadReport:
        """Fill the trunk and the three branch copies from an OSNet x1.0 checkpoint (OSNet/torchreid keys).

        ``source``: ``True`` (the ImageNet file via :func:`~reidkit.models.weights.resolve_weights`), a path, or a
        state dict. Each OSNet key ``k`` goes to ``trunk.k`` (conv1, conv2, conv3.0) or to
        ``global_branch.k``, ``part_branch.k`` and ``channel_branch.k`` (conv3.1-2, conv4, conv5). The load goes
        through :func:`~reidkit.models.weights.load_pretrained`: a missing OSNet key or a shape mismatch is an
        error naming the file; torchreid's ``fc``/``classifier`` are dropped; the LightMBN parts (drop
        bottleneck, channel conv, heads, attention) are reported as ``new``. Returns and stores the report.
        """
        if source is True:
            source = resolve_weights(imagenet_filename(BACKBONE_NAME), IMAGENET_URLS[BACKBONE_NAME])
        if source is False or isinstance(source, bool):
            raise ValueError("load_osnet_weights needs True, a path or a state dict")
        if isinstance(source, Mapping):
            name, state = "<state dict>", {str(k).removeprefix("module."): v for k, v in source.items()}
        elif isinstance(source, (str, os.PathLike)):
            name, state = str(source), read_checkpoint(source)
        else:
            raise TypeError(f"pretrained must be a bool, a path or a state dict, got {type(source).__name__}")

        target = self.state_dict()
        parts = ("trunk", *BRANCH_MODULES)
        remapped: dict[str, Tensor] = {}
        for key, value in state.items():
            owners = [f"{part}.{key}" for part in parts if f"{part}.{key}" in target]
            if owners:
                remapped.update(dict.fromkeys(owners, value))
            else:  # not an OSNet trunk/branch key: torchreid heads are dropped, anything else is an error
                remapped[key] = value
        try:
            report = load_pretrained(self, remapped, new_modules=self.new_module_prefixes)
        except ValueError as err:
            raise ValueError(f"loading OSNet x1.0 weights from {name} into LightMBN: {err}") from err
        self.load_report = report._replace(source=name)
        logger.info("LightMBN: %s", self.load_report.summary())
        return self.load_report

    # ------------------------------------------------------------------------------------------ forward
    def branch_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Feature maps: ``trunk`` (B, 384, H/8, W/8), ``global``/``part``/``channel`` (B, 512, H/16, W/16) and
        ``drop_bottleneck`` (b, before Top-DropBlock); for shape walks and visualisation."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LightMBN expects images (B, 3, H, W), got {tuple(x.shape)}")
        t = self.trunk(x)
        g = self.global_branch(t)
        return {"trunk": t, "global": g, "part": self.part_branch(t), "channel": self.channel_branch(t),
                "drop_bottleneck": self.drop_bottleneck(g)}

    def _heads(self, x: Tensor) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        maps = self.branch_maps(x)
        b, p = maps["drop_bottleneck"], maps["part"]
        halves = F.adaptive_avg_pool2d(p, (2, 1))
        cha = F.adaptive_avg_pool2d(maps["channel"], 1)
        half = cha.shape[1] // 2
        vectors = {
            "glo": F.adaptive_avg_pool2d(b, 1).flatten(1),
            "drop": self.drop_pool(self.top_drop(b)).flatten(1),
            "pg": self.part_global_pool(p).flatten(1),
            "p1": halves[:, :, 0].flatten(1),
            "p2": halves[:, :, 1].flatten(1),
            "c1": self.channel_conv(cha[:, :half]).flatten(1),
            "c2": self.channel_conv(cha[:, half:]).flatten(1),
        }
        return {name: self.heads[name](vectors[name]) for name in BRANCH_NAMES}

    def branch_features(self, x: Tensor) -> Tensor:
        """The 7 post-BN vectors stacked as (B, 7, D) in LMBN order (glo, drop, pg, p1, p2, c1, c2), before any
        normalisation: add the stacks of an image and its mirror for flip TTA, then :meth:`finalize`. Uses the
        current mode (call in eval for retrieval)."""
        out = self._heads(x)
        return torch.stack([out[name][1] for name in BRANCH_NAMES], dim=1)

    def finalize(self, stacked: Tensor) -> Tensor:
        """(B, 7, D) → the (B, 7·D) retrieval vector: per-branch L2 normalisation (``branch_norm``) and the
        block order of ``feature_order``."""
        if stacked.dim() != 3 or stacked.shape[1] != len(BRANCH_NAMES):
            raise ValueError(f"finalize expects (B, 7, D) stacked branch features, got {tuple(stacked.shape)}")
        if self.options.feature_order == "seed":
            stacked = stacked[:, [BRANCH_NAMES.index(n) for n in SEED_FEATURE_ORDER]]
        if self.branch_norm:
            stacked = F.normalize(stacked, p=2.0, dim=2)
        return stacked.flatten(1)

    @torch.no_grad()
    def extract_features(self, x: Tensor, flip: bool = False) -> Tensor:
        """Retrieval features (B, 7·D) without gradient, in the current mode. ``flip=True``: features of x and of
        its horizontal mirror are summed before normalisation (LMBN); for ``branch_norm=False`` they are averaged
        (the seed), which is the same direction."""
        stacked = self.branch_features(x)
        if flip:
            stacked = stacked + self.branch_features(x.flip(3))
            if not self.branch_norm:
                stacked = stacked / 2
        return self.finalize(stacked)

    def forward(self, x: Tensor, targets: Tensor | None = None) -> LightMBNTrainOutput | Tensor:
        """Training: :class:`LightMBNTrainOutput` (7 logit sets, 3 pre-BN metric features); eval: the (B, 3584)
        per-branch normalised feature. ``targets`` is accepted for the trainer's ``model(images, pids)`` call and
        ignored: LightMBN's heads are plain linear classifiers without margins."""
        out = self._heads(x)
        if not self.training:
            return self.finalize(torch.stack([out[name][1] for name in BRANCH_NAMES], dim=1))
        logits = BranchTensors(*(out[name][2] for name in BRANCH_NAMES))
        features = MetricFeatures(*(out[name][0] for name in METRIC_BRANCHES))
        return LightMBNTrainOutput(logits=logits, features=features)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, variant={self.variant!r}, feat_dim={self.feat_dim}"

    def named_heads(self) -> Iterator[tuple[str, LightMBNHead]]:
        """The seven heads in LMBN order."""
        for name in BRANCH_NAMES:
            yield name, self.heads[name]  # type: ignore[misc]
