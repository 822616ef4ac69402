"""reidkit.losses' sync-free path (the default off the CPU): the CPU path's values and gradients without a host read.

The sync-free path is forced on the CPU with ``sync_free=True``; the ``meta`` device (which has no data, so every
host read, ``nonzero`` and boolean indexing fails there) shows that nothing in it depends on the data.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from reidkit.losses import LOSSES, build_loss
from reidkit.losses._common import check_sync_free, resolve_sync_free

NUM_CLASSES = 8
FEAT_DIM = 6

#: (loss name, constructor arguments): every loss of the shipped recipes, with their variants.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("ce", {}),
    ("ce", {"epsilon": 0.0}),
    ("ce", {"smoothing_style": "fastreid"}),
    ("focal", {}),
    ("focal", {"gamma": 0.5, "alpha": 1.0}),
    ("center", {"num_classes": NUM_CLASSES, "feat_dim": FEAT_DIM}),
    ("center", {"num_classes": NUM_CLASSES, "feat_dim": FEAT_DIM, "squared": False}),
    ("triplet", {}),
    ("triplet", {"margin": 0.0}),
    ("triplet", {"norm_feature": True}),
    ("triplet", {"include_self_positive": True}),
    ("wrt", {}),
    ("wrt", {"margin": 0.3, "include_self_positive": True}),
    ("circle", {}),
    ("cosface", {}),
    ("ms", {}),
    ("ms", {"mining": False, "thresh": 0.7, "beta": 40.0}),
]
METRIC = ("triplet", "wrt", "circle", "cosface", "ms")
HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__")


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, kwargs = case
    return name + "".join(f"-{k}={v}" for k, v in kwargs.items() if k not in ("num_classes", "feat_dim"))


def build(name: str, kwargs: dict[str, Any], sync_free: bool | None, device: str = "cpu") -> nn.Module:
    """The loss with its parameters (centres) drawn from seed 0, so two builds hold the same ones."""
    torch.manual_seed(0)
    return LOSSES[name](**kwargs, sync_free=sync_free).to(device)


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Labels with anchors that have no positive (identities seen once), mixed with P×K ones, in a random order."""
    g = torch.Generator().manual_seed(0)
    for labels in ([0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 1, 2, 3, 3, 4, 5, 5], [7, 6, 6, 5, 4, 4, 4, 4, 3],
                   [1, 1, 2, 3, 4, 5, 6, 7]):
        y = torch.tensor(labels)[torch.randperm(len(labels), generator=g)]
        yield torch.randn(len(labels), NUM_CLASSES, generator=g), y  # (B, K) values: logits or features


def inputs_for(name: str, values: torch.Tensor) -> torch.Tensor:
    """Logits (B, K) for the classification losses, features (B, FEAT_DIM) for the others."""
    x = values if name in ("ce", "focal") else values[:, :FEAT_DIM].contiguous()
    return x.clone().requires_grad_(True)


def value_and_gradients(loss: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The loss, its gradient w.r.t. the input and w.r.t. each of the loss's own parameters."""
    value = loss(x, y)
    params = list(loss.parameters())
    grads = torch.autograd.grad(value, [x, *params])
    return [value.detach(), *grads]


# ------------------------------------------------------------------------------------------ equal results


def test_the_test_batches_hold_anchors_without_positives() -> None:
    lonely = [int((torch.bincount(y)[y] == 1).sum()) for _, y in batches()]
    assert lonely == [0, 3, 3, 6]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_sync_free_path_gives_the_cpu_paths_value_and_gradients(case: tuple[str, dict[str, Any]]) -> None:
    name, kwargs = case
    for values, y in batches():
        x = inputs_for(name, values)
        expected = value_and_gradients(build(name, kwargs, sync_free=False), x, y)
        got = value_and_gradients(build(name, kwargs, sync_free=True), x, y)
        assert len(got) == len(expected) == (3 if name == "center" else 2)
        assert expected[0] != 0 or name == "ms"  # a real loss (MS may mine nothing)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        if name not in METRIC:  # only the range check differs: the very same operations
            assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_default_is_the_cpu_path_on_the_cpu() -> None:
    loss = LOSSES["triplet"]()
    x, y = torch.randn(4, FEAT_DIM), torch.arange(4)  # no positives: only the CPU path raises
    with pytest.raises(ValueError, match="no identity appears twice"):
        loss(x, y)
    loss.sync_free = True  # the option is a plain attribute
    assert loss(x, y).item() == 0.0


# ----------------------------------------------------------------------------- what the path defines instead


@pytest.mark.parametrize("name", METRIC)
@pytest.mark.parametrize("labels, cause", [([0, 1, 2, 3], "no identity appears twice"),
                                           ([2, 2, 2, 2], "single identity")])
def test_no_valid_anchor_is_zero_with_a_zero_gradient_instead_of_an_error(
        name: str, labels: list[int], cause: str) -> None:
    x = torch.randn(4, FEAT_DIM, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = torch.tensor(labels)
    if name == "ms":  # MS gives 0 on both paths
        assert build(name, {}, sync_free=False)(x, y).item() == 0.0
    else:
        with pytest.raises(ValueError, match=cause):
            build(name, {}, sync_free=False)(x, y)
    value = build(name, {}, sync_free=True)(x, y)
    value.backward()
    assert value.item() == 0.0 and x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("name", ["ce", "focal", "center"])
def test_sync_free_path_skips_only_the_label_range_check(name: str) -> None:
    kwargs = {"num_classes": NUM_CLASSES, "feat_dim": FEAT_DIM} if name == "center" else {}
    x = inputs_for(name, torch.randn(3, NUM_CLASSES))
    y = torch.tensor([0, 1, NUM_CLASSES])  # out of range
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, {NUM_CLASSES}\)"):
        build(name, kwargs, sync_free=False)(x, y)
    with pytest.raises((IndexError, RuntimeError), match="out of (bounds|range)"):  # the indexing kernel's error
        build(name, kwargs, sync_free=True)(x, y)
    with pytest.raises(TypeError, match="integer"):  # static checks stay
        build(name, kwargs, sync_free=True)(x, y.float())
    with pytest.raises(ValueError, match="shape"):
        build(name, kwargs, sync_free=True)(x, y[:2])


def test_sync_free_option_is_checked_and_defaults_to_every_device_but_the_cpu() -> None:
    cpu, meta = torch.zeros(1), torch.zeros(1, device="meta")
    assert [resolve_sync_free(None, cpu), resolve_sync_free(None, meta)] == [False, True]
    assert [resolve_sync_free(True, cpu), resolve_sync_free(False, meta)] == [True, False]
    assert check_sync_free(None) is None and check_sync_free(True) is True
    for bad in (1, "yes"):
        with pytest.raises(TypeError, match=f"sync_free must be True, False or None.*got {bad!r}"):
            check_sync_free(bad)
    with pytest.raises(TypeError, match="sync_free must be"):
        build_loss([{"name": "triplet", "sync_free": "true"}])


# ---------------------------------------------------------------------------------------- no host reads


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_off_the_cpu_nothing_depends_on_the_data(case: tuple[str, dict[str, Any]]) -> None:
    """On ``meta`` every host read, ``nonzero`` and boolean indexing raises: forward and backward still run
    (sync-free by default there), and the CPU path forced there fails (a negative control)."""
    name, kwargs = case
    x = torch.randn(10, NUM_CLASSES if name in ("ce", "focal") else FEAT_DIM, device="meta", requires_grad=True)
    y = torch.randint(0, NUM_CLASSES, (10,), device="meta")
    value = build(name, kwargs, sync_free=None, device="meta")(x, y)
    value.backward()
    assert value.shape == () and x.grad is not None and x.grad.shape == x.shape
    with pytest.raises((RuntimeError, NotImplementedError), match="meta"):
        build(name, kwargs, sync_free=False, device="meta")(x, y)


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the tensor-to-Python reads made while the test runs (each a device sync on CUDA)."""
    reads: list[str] = []

    def counting(name: str) -> Any:
        original = getattr(torch.Tensor, name)

        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            reads.append(name)
            return original(self, *args, **kwargs)
        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    assert float(torch.ones(())) == 1.0 and torch.ones(()) and reads == ["__float__", "__bool__"]  # seen
    reads.clear()
    return reads


SHIPPED = ("ce", "triplet", "center", "wrt", "circle", "cosface", "ms", "focal")
"""The loss terms of the shipped recipes (``reidkit/configs/*.yaml``), in the order they are summed below."""


@pytest.mark.parametrize("sync_free, expected", [
    (True, []),
    # the CPU path: ce's range check, triplet's any(), centre loss's min and max, wrt's, circle's, cosface's and
    # ms's any(), focal's range check
    (False, ["tolist", "__bool__", "__int__", "__int__", "__bool__", "__bool__", "__bool__", "__bool__", "tolist"]),
])
def test_sync_free_path_of_the_shipped_losses_reads_nothing_back(
        host_reads: list[str], sync_free: bool, expected: list[str]) -> None:
    torch.manual_seed(0)
    terms = [{"name": name, "sync_free": sync_free} for name in SHIPPED]
    loss = build_loss(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)
    values, y = next(batches())
    logits = values.clone().requires_grad_(True)
    features = values[:, :FEAT_DIM].clone().requires_grad_(True)
    for _ in range(5):  # five training steps' worth
        out = loss(labels=y, logits=logits, features=features)
        out.total.backward()
    assert host_reads == expected * 5
