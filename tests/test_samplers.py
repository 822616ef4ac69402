"""P×K identity sampler (components.md §10): batch structure, replacement, determinism, exact length, DDP."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from reidkit.data.samplers import DistributedRandomIdentitySampler, PlanStats, RandomIdentitySampler


def skewed_pids(n_pids: int = 40, seed: int = 0, low: int = 1, high: int = 30) -> list[int]:
    """A shuffled pid list whose identities have between ``low`` and ``high`` images (long tail included)."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.geometric(0.12, size=n_pids) + low - 1, high)
    pids = np.repeat(np.arange(n_pids) * 7 + 3, counts)  # non-contiguous pid values
    return rng.permutation(pids).tolist()


def check_batches(batches: list[list[int]], pids: list[int], P: int, K: int) -> None:
    for batch in batches:
        assert len(batch) == P * K
        chunk_pids = [pids[i] for i in batch]
        for c in range(P):  # chunk c holds K indices of one pid
            assert len(set(chunk_pids[c * K:(c + 1) * K])) == 1
        assert len(set(chunk_pids)) == P
        assert all(v == K for v in Counter(chunk_pids).values())


@pytest.mark.parametrize(("batch_size", "K"), [(16, 4), (8, 2), (12, 3), (32, 8)])
def test_every_batch_is_p_pids_times_k(batch_size: int, K: int) -> None:
    pids = skewed_pids(seed=batch_size)
    sampler = RandomIdentitySampler(pids, batch_size, K, seed=1)
    batches = list(sampler)
    assert batches
    check_batches(batches, pids, batch_size // K, K)
    assert all(isinstance(i, int) for b in batches for i in b)


def test_replacement_only_for_small_pids() -> None:
    K = 4
    pids = skewed_pids(n_pids=60, seed=3)
    counts = Counter(pids)
    assert any(n < K for n in counts.values()) and any(n >= K for n in counts.values())
    for epoch in range(5):
        sampler = RandomIdentitySampler(pids, 16, K, seed=11)
        sampler.set_epoch(epoch)
        occurrences = Counter(i for b in sampler for i in b)
        for index, times in occurrences.items():
            if counts[pids[index]] >= K:
                assert times == 1, f"index {index} of a pid with {counts[pids[index]]} images repeated"
        # pids with < K images appear as one chunk of exactly K draws of their own images
        for batch in sampler:
            for c in range(4):
                chunk = batch[c * K:(c + 1) * K]
                if counts[pids[chunk[0]]] < K:
                    assert len(set(chunk)) <= counts[pids[chunk[0]]]


def test_pid_with_one_image_fills_its_chunk_with_copies() -> None:
    pids = [0] + [1] * 4 + [2] * 4
    batches = list(RandomIdentitySampler(pids, 6, 2, seed=0))
    assert len(batches) == 1  # 3 pids: P=3, pid 0 has one chunk, so one batch only
    assert sorted(batches[0]).count(0) == 2


def test_same_seed_and_epoch_same_plan_other_epoch_or_seed_differs() -> None:
    pids = skewed_pids(seed=5)
    a = RandomIdentitySampler(pids, 16, 4, seed=7)
    b = RandomIdentitySampler(pids, 16, 4, seed=7)
    assert list(a) == list(b)
    np.testing.assert_array_equal(a.epoch_plan(3), b.epoch_plan(3))
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    c = RandomIdentitySampler(pids, 16, 4, seed=8)
    c.set_epoch(1)
    assert list(c) != list(a)


def test_plan_is_cached_and_set_epoch_mid_iteration_does_not_change_running_epoch() -> None:
    sampler = RandomIdentitySampler(skewed_pids(seed=2), 16, 4, seed=0)
    plan0 = sampler.epoch_plan()
    it = iter(sampler)
    first = next(it)
    sampler.set_epoch(1)
    rest = list(it)
    assert [first, *rest] == plan0.tolist()
    assert list(sampler) == sampler.epoch_plan(1).tolist()
    assert sampler.epoch_plan(0).tolist() == plan0.tolist()


def test_len_equals_yielded_batches_for_many_seeds() -> None:
    for seed in range(30):
        pids = skewed_pids(n_pids=25 + seed, seed=seed, high=5 + seed)
        for batch_size, K in ((16, 4), (8, 2), (9, 3)):
            sampler = RandomIdentitySampler(pids, batch_size, K, seed=seed)
            for epoch in (0, 1):
                sampler.set_epoch(epoch)
                n = len(sampler)
                assert n == len(list(sampler)) == sampler.stats.batches
                assert n >= 1


def test_len_is_exact_where_the_closed_form_overcounts() -> None:
    # one pid with 40 images, 3 with 4: the torchreid closed form says (40 + 12) / 8 = 6 batches of P=2, K=4,
    # but a batch needs two distinct pids, so at most 3 batches (one per small-pid chunk) are possible
    pids = [0] * 40 + [1] * 4 + [2] * 4 + [3] * 4
    sampler = RandomIdentitySampler(pids, 8, 4, seed=0)
    assert len(sampler) == len(list(sampler))
    assert len(sampler) <= 3 < 6


def test_loader_len_is_number_of_steps() -> None:
    pids = skewed_pids(seed=9)
    sampler = RandomIdentitySampler(pids, 16, 4, seed=0)
    loader = DataLoader(list(range(len(pids))), batch_sampler=sampler)
    assert len(loader) == len(list(loader)) == len(sampler)


def test_stats_report_unused_images_and_pids() -> None:
    pids = [0] * 7 + [1] * 4 + [2] * 1 + [3] * 9
    sampler = RandomIdentitySampler(pids, 4, 2, seed=0)
    stats = sampler.stats
    assert stats is None
    len(sampler)
    stats = sampler.stats
    assert isinstance(stats, PlanStats)
    assert (stats.images, stats.pids, stats.pids_with_replacement) == (21, 4, 1)  # pid 2 has 1 < K image
    used = {i for b in sampler for i in b}
    assert stats.images_unused == 21 - len(used)
    assert stats.images_unused >= 2  # the odd remainders of pids 0 and 3 at least
    assert stats.pids_unused == 4 - len({pids[i] for i in used})
    assert RandomIdentitySampler(pids, 8, 4, seed=0).pids_with_replacement == 1
    assert RandomIdentitySampler(pids, 10, 5, seed=0).pids_with_replacement == 2


def test_plan_does_not_depend_on_pid_values_only_grouping() -> None:
    pids = skewed_pids(seed=4)
    relabelled = [p + 1000 for p in pids]
    assert list(RandomIdentitySampler(pids, 16, 4, seed=3)) == list(RandomIdentitySampler(relabelled, 16, 4, seed=3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 16, "num_instances": 1}, "num_instances"),
        ({"batch_size": 15, "num_instances": 4}, "not divisible"),
        ({"batch_size": 0, "num_instances": 4}, "batch_size"),
        ({"batch_size": 4.0, "num_instances": 2}, "batch_size"),
        ({"batch_size": 16, "num_instances": 4, "seed": -1}, "seed"),
        ({"batch_size": 48, "num_instances": 4}, "at least P"),
    ],
)
def test_validation_errors(kwargs: dict, message: str) -> None:
    pids = [p for p in range(10) for _ in range(5)]
    with pytest.raises(ValueError, match=message):
        RandomIdentitySampler(pids, **kwargs)


def test_bad_pids_and_epoch_rejected() -> None:
    with pytest.raises(ValueError, match="integers"):
        RandomIdentitySampler([0.5, 1.5], 2, 2)
    with pytest.raises(ValueError, match="at least P"):
        RandomIdentitySampler([], 4, 2)
    sampler = RandomIdentitySampler([0, 0, 1, 1], 4, 2)
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(-1)


# ------------------------------------------------------------------------------------------ distributed


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_distributed_ranks_disjoint_equal_length_union_is_truncated_plan(world: int) -> None:
    pids = skewed_pids(n_pids=80, seed=world)
    for epoch in (0, 2):
        full = RandomIdentitySampler(pids, 16, 4, seed=5)
        full.set_epoch(epoch)
        plan = full.epoch_plan()
        ranks = []
        for r in range(world):
            s = DistributedRandomIdentitySampler(pids, 16, 4, seed=5, num_replicas=world, rank=r)
            s.set_epoch(epoch)
            ranks.append(list(s))
            assert len(s) == len(ranks[-1])
            np.testing.assert_array_equal(s.truncated_plan(), plan[: (len(plan) // world) * world])
        assert len({len(b) for b in ranks}) == 1
        assert len(ranks[0]) == len(plan) // world
        as_tuples = [tuple(b) for rank in ranks for b in rank]
        assert len(set(as_tuples)) == len(as_tuples)  # no batch on two ranks
        expected = {tuple(b) for b in plan[: (len(plan) // world) * world].tolist()}
        assert set(as_tuples) == expected
        for r in range(world):  # rank r takes batches r, r + world, ...
            assert ranks[r] == plan[r: (len(plan) // world) * world: world].tolist()
        # whole P×K batches on every rank
        for rank in ranks:
            check_batches(rank, pids, 4, 4)


def test_distributed_needs_world_or_process_group() -> None:
    with pytest.raises(RuntimeError, match="pass num_replicas"):
        DistributedRandomIdentitySampler([0, 0, 1, 1], 4, 2)
    with pytest.raises(ValueError, match="rank"):
        DistributedRandomIdentitySampler([0, 0, 1, 1], 4, 2, num_replicas=2, rank=2)


def test_distributed_plan_shorter_than_world_is_an_error() -> None:
    pids = [0, 0, 1, 1]  # exactly one batch per epoch
    sampler = DistributedRandomIdentitySampler(pids, 4, 2, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="fewer than num_replicas"):
        len(sampler)
