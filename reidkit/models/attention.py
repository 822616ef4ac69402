"""Attention modules that a backbone inserts between its blocks: SE, CBAM, NonLocal, GlobalContext, PAM, CAM,
FPB and PLR.

Every module maps ``(B, C, H, W)`` → ``(B, C, H, W)`` and takes its channel count from the ``channels``
argument (a backbone passes its block's ``out_channels``; nothing is hard-coded). Build one by name::

    block = build_attention("nonlocal", channels=1024)              # C' = C/2
    block = build_attention("nonlocal", channels=1024, inter_channels=1)   # FastReID/AGW released code

The residual modules (``nonlocal``, ``gc`` with add fusion, ``pam``, ``cam``, ``fpb``) are exactly the identity
at initialisation, so inserting them into a pretrained backbone does not change its output before training;
each class says so in its ``identity_at_init`` attribute. Softmaxes and the affinity products run in float32 even
under autocast (components reference §0).

Formulas below use x ∈ ℝ^{C×H×W}, N = H·W, and σ for the logistic sigmoid.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._numerics import autocast_disabled, compute_dtype

__all__ = [
    "ATTENTION",
    "CAM",
    "CBAM",
    "FPB",
    "PAM",
    "PLR",
    "GlobalContext",
    "NonLocal",
    "SqueezeExcitation",
    "build_attention",
    "make_divisible",
]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``, default ``divisor``),
    bumping up one step when rounding down would lose more than ``1 - round_limit`` of it (the MobileNet/timm
    channel rule)."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def _check_channels(channels: int, who: str) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{who}: channels must be a positive int, got {channels!r}")
    return channels


def _check_input(x: torch.Tensor, channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{who} built for {channels} channels expects (B, {channels}, H, W), got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------------------------
# SE
# --------------------------------------------------------------------------------------------------------------
class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation (Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv 1709.01507).

    ``z = GAP(x)``; ``g = σ(W₂ ReLU(W₁ z + b₁) + b₂)`` ∈ (0, 1)^C; ``out = x ⊙ g`` (g broadcast over H, W).
    W₁: C → r, W₂: r → C, 1×1 convs with bias; r = C · ratio rounded to the nearest multiple of ``divisor``
    (at least ``divisor``; timm's ``SEModule`` rule, whose state dicts load as they are).

    Args:
        channels: C.
        ratio: reduction ratio (default 1/16).
        divisor: round r to a multiple of this (default 8).
        hidden: give r directly instead (overrides ratio/divisor).

    Not the identity at initialisation (g ≈ 0.5). :meth:`gate` returns g with shape (B, C, 1, 1).
    """

    identity_at_init = False

    def __init__(self, channels: int, ratio: float = 1.0 / 16, divisor: int = 8, hidden: int | None = None) -> None:
        super().__init__()
        self.channels = _check_channels(channels, "SE")
        if hidden is None:
            if not ratio > 0:
                raise ValueError(f"SE: ratio must be > 0, got {ratio!r}")
            hidden = make_divisible(channels * ratio, divisor, round_limit=0.0)
        self.hidden = _check_channels(hidden, "SE hidden")
        self.fc1 = nn.Conv2d(channels, self.hidden, kernel_size=1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(self.hidden, channels, kernel_size=1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The channel gate g = σ(W₂ ReLU(W₁ GAP(x))), shape (B, C, 1, 1), values in (0, 1)."""
        _check_input(x, self.channels, "SE")
        z = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(self.act(self.fc1(z))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


# --------------------------------------------------------------------------------------------------------------
# CBAM
# --------------------------------------------------------------------------------------------------------------
class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo, Park, Lee, Kweon, ECCV 2018, arXiv 1807.06521): a channel gate
    followed by a spatial gate.

    Channel: ``x' = x ⊙ σ(M(AvgPool x) + M(MaxPool x))`` with one shared MLP M = 1×1 conv C→r (no bias) → ReLU →
    1×1 conv r→C (no bias), ``r = max(1, ⌊C · ratio⌋)`` (ratio 1/16).
    Spatial: ``out = x' ⊙ σ(BN(conv_{k×k}([mean_c x'; max_c x'])))``, conv 2→1 without bias, padding k//2 (k = 7).

    Not the identity at initialisation. :meth:`channel_gate` (B, C, 1, 1) and :meth:`spatial_gate` (B, 1, H, W)
    expose the two gates: ``forward(x) == x' * spatial_gate(x')`` with ``x' = x * channel_gate(x)``.
    """

    identity_at_init = False

    def __init__(self, channels: int, ratio: float = 1.0 / 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channels = _check_channels(channels, "CBAM")
        if not ratio > 0:
            raise ValueError(f"CBAM: ratio must be > 0, got {ratio!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"CBAM: kernel_size must be odd and positive, got {kernel_size!r}")
        hidden = max(1, int(channels * ratio))
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )
        self.spatial_conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)
        self.spatial_bn = nn.BatchNorm2d(1)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """σ(M(avg) + M(max)), shape (B, C, 1, 1)."""
        _check_input(x, self.channels, "CBAM")
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """σ(BN(conv([mean over channels; max over channels]))), shape (B, 1, H, W)."""
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial_bn(self.spatial_conv(desc)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_gate(x)
        return x * self.spatial_gate(x)


# --------------------------------------------------------------------------------------------------------------
# NonLocal
# --------------------------------------------------------------------------------------------------------------
class NonLocal(nn.Module):
    r"""Non-local block (Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018, arXiv 1711.07971), as
    used for re-ID by AGW (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook", TPAMI
    2021, arXiv 2001.04193) and FastReID.

    θ, φ, g: 1×1 convs C→C' with bias, giving C'×N matrices. ``f`` is the N×N affinity:

    * ``mode="dot"`` (default, AGW/FastReID): ``f_{ij} = θ_iᵀ φ_j / N`` (no softmax);
    * ``mode="gaussian"`` (embedded Gaussian, the paper's default): ``f_{ij} = softmax_j(θ_iᵀ φ_j)``, rows sum to 1.

    ``y_i = Σ_j f_{ij} g_j``; ``out = x + BN(W y)``, W a 1×1 conv C'→C with bias. The BN's weight **and** bias are
    initialised to 0, so the block is exactly the identity at initialisation.

    Width C': ``C // reduction`` (default reduction 2, the paper/AGW intent; the seed's recipe B used 16), or
    ``inter_channels`` directly. FastReID's and AGW's released code effectively use ``inter_channels=1``
    (fast-reid #256, #558); that variant is available only through this explicit option.

    The affinity, the aggregation, W and the BN run with autocast off, in float32 (θᵀφ over hundreds of channels,
    and hence y, overflow fp16); the result is added to x in x's dtype.
    In ``dot`` mode the product is evaluated as ``θᵀ(φ gᵀ)/N`` when C' < N (same result, O(N C'²) instead of
    O(N² C')). :meth:`attention_map` returns f as (B, N, N) for inspection.
    """

    identity_at_init = True

    def __init__(self, channels: int, reduction: int = 2, inter_channels: int | None = None,
                 mode: Literal["dot", "gaussian"] = "dot") -> None:
        super().__init__()
        self.channels = _check_channels(channels, "NonLocal")
        if mode not in ("dot", "gaussian"):
            raise ValueError(f"NonLocal: mode must be 'dot' or 'gaussian', got {mode!r}")
        self.mode = mode
        if inter_channels is None:
            if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
                raise ValueError(f"NonLocal: reduction must be a positive int, got {reduction!r}")
            inter_channels = max(1, channels // reduction)
        self.inter_channels = _check_channels(inter_channels, "NonLocal inter_channels")
        c, ci = channels, self.inter_channels
        self.theta = nn.Conv2d(c, ci, kernel_size=1)
        self.phi = nn.Conv2d(c, ci, kernel_size=1)
        self.g = nn.Conv2d(c, ci, kernel_size=1)
        self.W = nn.Conv2d(ci, c, kernel_size=1)
        self.bn = nn.BatchNorm2d(c)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inter_channels={self.inter_channels}, mode={self.mode!r}"

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_input(x, self.channels, "NonLocal")
        b = x.shape[0]
        return (self.theta(x).reshape(b, self.inter_channels, -1), self.phi(x).reshape(b, self.inter_channels, -1),
                self.g(x).reshape(b, self.inter_channels, -1))

    def _affinity(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        logits = theta.transpose(1, 2) @ phi  # (B, N, N): θ_iᵀ φ_j
        if self.mode == "gaussian":
            return logits.softmax(dim=-1)
        return logits / theta.shape[-1]

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The affinity f as (B, N, N), N = H·W, computed in float32 (row i: weights of all positions j)."""
        theta, phi, _ = self._embed(x)
        dtype = compute_dtype(theta)
        with autocast_disabled(x.device.type):
            return self._affinity(theta.to(dtype), phi.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, phi, g = self._embed(x)
        b, _, h, w = x.shape
        n = h * w
        dtype = compute_dtype(theta)
        with autocast_disabled(x.device.type):
            theta, phi, g = theta.to(dtype), phi.to(dtype), g.to(dtype)
            if self.mode == "dot" and self.inter_channels < n:
                y = (theta.transpose(1, 2) @ (phi @ g.transpose(1, 2))).transpose(1, 2) / n  # (B, C', N)
            else:
                y = g @ self._affinity(theta, phi).transpose(1, 2)  # y_i = Σ_j f_ij g_j → (B, C', N)
            # W and BN in the parameters' dtype (float32 under AMP): unlike an attention average, y is not bounded
            # by the input's range (a sum of N products of C'-channel dot products) and can exceed fp16's 65504
            y = y.reshape(b, self.inter_channels, h, w).to(self.W.weight.dtype)
            z = self.bn(self.W(y))
        return x + z.to(x.dtype)


# --------------------------------------------------------------------------------------------------------------
# GlobalContext
# --------------------------------------------------------------------------------------------------------------
class _ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, 1, 1) context (GCNet's LN([C·r, 1, 1]))."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.normalized_shape = (channels,)  # a constant, so that tracing exporters see no shape arithmetic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class _ContextTransform(nn.Module):
    """t(c) = fc2(ReLU(LN(fc1 c))), 1×1 convs with bias: C → hidden → C."""

    def __init__(self, channels: int, hidden: int, norm_eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.norm = _ChannelLayerNorm(hidden, eps=norm_eps)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(c))))


class GlobalContext(nn.Module):
    """Global Context block (Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and
    Beyond", arXiv 1904.11492; "Global Context Networks", TPAMI, arXiv 2012.13375).

    Context ``c = Σ_p softmax_p(w_kᵀ x_p + b) x_p`` (1×1 conv C→1 with bias, softmax over the N positions, in
    float32). Transform ``t(c) = W₂ ReLU(LN(W₁ c))``, W₁: C → hidden, LN over the hidden channels,
    ``hidden = max(1, round(C · ratio))`` (ratio 1/16).

    * ``fusion="add"`` (GCNet, default): ``out = x + t(c)`` with W₂ (weight and bias) zero-initialised, so the
      block is exactly the identity at initialisation.
    * ``fusion="scale"`` (timm / the seed toolbox, recipe A): ``out = x ⊙ σ(t′(c))`` with its own transform t′ at
      default init (gate ≈ 0.5, not the identity).
    * ``fusion="both"``: ``out = x ⊙ σ(t′(c)) + t(c)``.

    The context conv gets Kaiming-normal (fan-in) init. Submodule names (``conv_attn``, ``mlp_add``,
    ``mlp_scale`` with ``fc1``/``norm``/``fc2``) follow timm's ``GlobalContext`` so seed checkpoints load by name.
    The LN epsilon (``norm_eps``) defaults to 1e-5 (GCNet's ``nn.LayerNorm``), and to 1e-6 for ``fusion="scale"``
    (timm's ``LayerNorm2d``), with which a timm/seed block's weights give the same outputs.
    """

    def __init__(self, channels: int, ratio: float = 1.0 / 16, fusion: Literal["add", "scale", "both"] = "add",
                 hidden: int | None = None, norm_eps: float | None = None) -> None:
        super().__init__()
        self.channels = _check_channels(channels, "GlobalContext")
        if fusion not in ("add", "scale", "both"):
            raise ValueError(f"GlobalContext: fusion must be 'add', 'scale' or 'both', got {fusion!r}")
        self.fusion = fusion
        if hidden is None:
            if not ratio > 0:
                raise ValueError(f"GlobalContext: ratio must be > 0, got {ratio!r}")
            hidden = max(1, int(channels * ratio + 0.5))
        self.hidden = _check_channels(hidden, "GlobalContext hidden")
        self.conv_attn = nn.Conv2d(channels, 1, kernel_size=1, bias=True)
        nn.init.kaiming_normal_(self.conv_attn.weight, mode="fan_in", nonlinearity="relu")
        eps = (1e-6 if fusion == "scale" else 1e-5) if norm_eps is None else float(norm_eps)
        self.mlp_add = _ContextTransform(channels, self.hidden, eps) if fusion in ("add", "both") else None
        self.mlp_scale = _ContextTransform(channels, self.hidden, eps) if fusion in ("scale", "both") else None
        if self.mlp_add is not None:
            nn.init.zeros_(self.mlp_add.fc2.weight)
            nn.init.zeros_(self.mlp_add.fc2.bias)

    @property
    def identity_at_init(self) -> bool:
        """True for add fusion (zero-initialised W₂); scale fusion starts at x ⊙ σ(·) ≈ 0.5·x."""
        return self.fusion == "add"

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, fusion={self.fusion!r}"

    def context_weights(self, x: torch.Tensor) -> torch.Tensor:
        """softmax over positions of the context conv, shape (B, 1, N), float32; each row sums to 1."""
        _check_input(x, self.channels, "GlobalContext")
        logits = self.conv_attn(x).flatten(2)
        with autocast_disabled(x.device.type):
            return logits.to(compute_dtype(logits)).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.context_weights(x)  # (B, 1, N)
        with autocast_disabled(x.device.type):
            context = x.flatten(2).to(weights.dtype) @ weights.transpose(1, 2)  # (B, C, 1)
        context = context.unsqueeze(-1).to(x.dtype)  # a convex combination of x: safe in x's dtype
        out = x
        if self.mlp_scale is not None:
            out = out * torch.sigmoid(self.mlp_scale(context))
        if self.mlp_add is not None:
            out = out + self.mlp_add(context)
        return out


# --------------------------------------------------------------------------------------------------------------
# PAM / CAM (DANet, ABD-Net) and their compositions FPB, PLR
# --------------------------------------------------------------------------------------------------------------
class PAM(nn.Module):
    """Position attention module (Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019, arXiv
    1809.02983; ABD-Net, Chen et al., ICCV 2019, arXiv 1908.01114).

    Q, K: 1×1 convs C → max(1, C // 8) with bias; V: 1×1 conv C → C with bias. ``A = softmax_j(Q_iᵀ K_j)`` over
    the N positions (float32), ``out = BN?(γ · V Aᵀ) + x``; γ is a scalar initialised to 0 and BN? an optional
    BatchNorm2d (``batchnorm=True``), so the module is exactly the identity at initialisation.
    :meth:`attention_map` returns A as (B, N, N) (rows sum to 1).
    """

    identity_at_init = True

    def __init__(self, channels: int, batchnorm: bool = False, reduction: int = 8) -> None:
        super().__init__()
        self.channels = _check_channels(channels, "PAM")
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"PAM: reduction must be a positive int, got {reduction!r}")
        qk = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, qk, kernel_size=1)
        self.key = nn.Conv2d(channels, qk, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(channels) if batchnorm else None

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """A = softmax_j(Q_iᵀ K_j), shape (B, N, N), float32."""
        _check_input(x, self.channels, "PAM")
        q, k = self.query(x).flatten(2), self.key(x).flatten(2)
        dtype = compute_dtype(q)
        with autocast_disabled(x.device.type):
            return (q.to(dtype).transpose(1, 2) @ k.to(dtype)).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attention_map(x)
        v = self.value(x).flatten(2)
        with autocast_disabled(x.device.type):
            y = v.to(attn.dtype) @ attn.transpose(1, 2)  # out_i = Σ_j A_ij V_j → (B, C, N)
        # each y_i is a convex combination of V's values (already in the autocast / input dtype): safe to cast back
        y = (self.gamma.to(y.dtype) * y).reshape(x.shape).to(x.dtype)
        if self.bn is not None:
            y = self.bn(y)
        return x + y


class CAM(nn.Module):
    """Channel attention module (DANet, Fu et al., CVPR 2019; ABD-Net, Chen et al., ICCV 2019).

    With X the C×N reshaped input: ``E = X Xᵀ`` (C×C), ``E′ = rowmax(E) − E``, ``A = softmax(E′)`` per row
    (float32), ``out = BN?(γ · A X) + x``; γ a scalar initialised to 0, BN? optional. No convolutions; exactly the
    identity at initialisation. :meth:`attention_map` returns A as (B, C, C).
    """

    identity_at_init = True

    def __init__(self, channels: int, batchnorm: bool = False) -> None:
        super().__init__()
        self.channels = _check_channels(channels, "CAM")
        self.gamma = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(channels) if batchnorm else None

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """A = softmax(rowmax(E) − E) with E = X Xᵀ, shape (B, C, C), float32."""
        _check_input(x, self.channels, "CAM")
        dtype = compute_dtype(x)
        with autocast_disabled(x.device.type):
            flat = x.flatten(2).to(dtype)
            energy = flat @ flat.transpose(1, 2)
            energy = energy.amax(dim=-1, keepdim=True) - energy
            return energy.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attention_map(x)
        with autocast_disabled(x.device.type):
            y = attn @ x.flatten(2).to(attn.dtype)  # (B, C, N)
        # each row of y is a convex combination of x's rows: safe to cast back to x's dtype
        y = (self.gamma.to(y.dtype) * y).reshape(x.shape).to(x.dtype)
        if self.bn is not None:
            y = self.bn(y)
        return x + y


class FPB(nn.Module):
    """FPB attention ("FPB: Feature Pyramid Branch for Person Re-Identification", arXiv 2108.01901):
    ``CAM(PAM(x))``, position attention first; both BN flags off by default. Identity at initialisation."""

    identity_at_init = True

    def __init__(self, channels: int, pam_batchnorm: bool = False, cam_batchnorm: bool = False) -> None:
        super().__init__()
        self.channels = _check_channels(channels, "FPB")
        self.pam = PAM(channels, batchnorm=pam_batchnorm)
        self.cam = CAM(channels, batchnorm=cam_batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam(self.pam(x))


class PLR(nn.Module):
    """PLR attention (Xie et al., "Learning Diverse Features with Part-Level Resolution for Person
    Re-Identification", arXiv 2001.07442): ``SE(PAM(x))`` with PAM's BatchNorm on and SE ratio 1/16.
    Not the identity at initialisation (the SE gate ≈ 0.5)."""

    identity_at_init = False

    def __init__(self, channels: int, pam_batchnorm: bool = True, se_ratio: float = 1.0 / 16) -> None:
        super().__init__()
        self.channels = _check_channels(channels, "PLR")
        self.pam = PAM(channels, batchnorm=pam_batchnorm)
        self.se = SqueezeExcitation(channels, ratio=se_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.pam(x))


# --------------------------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------------------------
ATTENTION: dict[str, type[nn.Module]] = {
    "cam": CAM,
    "cbam": CBAM,
    "fpb": FPB,
    "gc": GlobalContext,
    "nonlocal": NonLocal,
    "pam": PAM,
    "plr": PLR,
    "se": SqueezeExcitation,
}

_ALIASES = {"global_context": "gc", "non_local": "nonlocal"}


def build_attention(name: str, channels: int, **kwargs: object) -> nn.Module:
    """Attention module by name (see :data:`ATTENTION`; aliases ``global_context`` → ``gc``, ``non_local`` →
    ``nonlocal``) for a ``(B, channels, H, W)`` input; ``kwargs`` go to the class (e.g. ``fusion="scale"`` for
    ``gc``, ``inter_channels=1`` or ``reduction=16`` for ``nonlocal``). Unknown names raise ``ValueError``."""
    key = name.lower() if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in ATTENTION:
        raise ValueError(f"unknown attention {name!r}; valid names: {', '.join(sorted(ATTENTION))}"
                         f" (aliases: {', '.join(sorted(_ALIASES))})")
    _check_channels(channels, f"build_attention({name!r})")
    return ATTENTION[key](channels, **kwargs)

