"""Tests of ``carve_validation``: a seeded validation split carved from the training identities."""
from __future__ import annotations

from pathlib import Path

import pytest

from reidkit.data.datasets import Market1501, ReIDItem, ValidationSplit, carve_validation


def make_items() -> list[ReIDItem]:
    """Training items with pids 0..7; pid 6 is seen by one camera only, pid 7 has one image per camera."""
    items = []
    cams_per_pid = {0: [0, 0, 1, 2], 1: [1, 1, 1, 3], 2: [0, 1, 1], 3: [2, 2, 4, 4, 5], 4: [0, 3, 3],
                    5: [1, 2, 2, 2], 6: [0, 0, 0], 7: [0, 1]}
    for pid, cams in cams_per_pid.items():
        for n, cam in enumerate(cams):
            items.append(ReIDItem(f"/d/{pid:04d}_c{cam + 1}_{n:02d}.jpg", pid, cam))
    return items[::-1]  # the input order must not matter


def test_carve_properties():
    items = make_items()
    split = carve_validation(items, num_ids=3, seed=0)
    assert isinstance(split, ValidationSplit)
    train, query, gallery = split
    # disjoint, and together exactly the input
    paths = [x.path for x in train + query + gallery]
    assert len(paths) == len(set(paths)) == len(items)
    carved = {x.pid for x in query}
    assert len(carved) == 3 and carved <= {0, 1, 2, 3, 4, 5}  # pids 6 and 7 are not eligible
    assert {x.pid for x in gallery} == carved
    # one query per camera of each carved identity; the rest in the gallery, pids and cameras kept
    for pid in carved:
        own = [x for x in items if x.pid == pid]
        assert sorted(x.camid for x in query if x.pid == pid) == sorted({x.camid for x in own})
        assert sorted(query + gallery) == sorted(x for x in items if x.pid in carved)
    # train: the other identities relabelled 0..M-1 in ascending order of the input pid
    kept = sorted(set(range(8)) - carved)
    assert sorted({x.pid for x in train}) == list(range(len(kept)))
    by_path = {x.path: x.pid for x in items}
    assert all(kept[x.pid] == by_path[x.path] for x in train)
    # each list sorted by path
    for part in split:
        assert part == sorted(part, key=lambda x: x.path)


def test_carve_is_deterministic_and_seed_dependent():
    items = make_items()
    first = carve_validation(items, num_ids=2, seed=7)
    assert carve_validation(list(reversed(items)), num_ids=2, seed=7) == first
    outcomes = {tuple(carve_validation(items, num_ids=2, seed=s).query) for s in range(10)}
    assert len(outcomes) > 1


def test_carve_all_eligible_ids_gives_a_fixed_train_split():
    train, query, gallery = carve_validation(make_items(), num_ids=6, seed=3)
    assert train == [ReIDItem("/d/0006_c1_00.jpg", 0, 0), ReIDItem("/d/0006_c1_01.jpg", 0, 0),
                     ReIDItem("/d/0006_c1_02.jpg", 0, 0), ReIDItem("/d/0007_c1_00.jpg", 1, 0),
                     ReIDItem("/d/0007_c2_01.jpg", 1, 1)]
    assert len(query) == 3 + 2 + 2 + 3 + 2 + 2  # cameras of pids 0..5
    assert len(gallery) == 28 - 5 - len(query)  # 28 items in all


def test_carve_accepts_a_dataset(tmp_path: Path):
    names = {"bounding_box_train": ["0002_c1s1_000001_00.jpg", "0002_c1s1_000002_00.jpg", "0002_c2s1_000003_00.jpg",
                                    "0010_c1s1_000004_00.jpg", "0100_c3s1_000005_00.jpg"],
             "query": ["0002_c2s1_000006_00.jpg"], "bounding_box_test": ["0002_c1s1_000007_00.jpg"]}
    for sub, files in names.items():
        (tmp_path / sub).mkdir()
        for name in files:
            (tmp_path / sub / name).touch()
    train, query, gallery = carve_validation(Market1501(tmp_path), num_ids=1, seed=0)
    t = tmp_path / "bounding_box_train"
    assert train == [ReIDItem(str(t / "0010_c1s1_000004_00.jpg"), 0, 0),
                     ReIDItem(str(t / "0100_c3s1_000005_00.jpg"), 1, 2)]
    assert query[-1] == ReIDItem(str(t / "0002_c2s1_000003_00.jpg"), 0, 1)  # the only camera-2 image
    assert len(query) == 2 and len(gallery) == 1


@pytest.mark.parametrize(("num_ids", "seed", "message"), [
    (0, 0, "num_ids must be a positive int"),
    (True, 0, "num_ids must be a positive int"),
    (1, -1, "seed must be a non-negative int"),
    (7, 0, "only 6 of 8 identities are eligible"),
    (8, 0, "would leave no training identity"),
])
def test_carve_errors(num_ids, seed, message):
    with pytest.raises(ValueError, match=message):
        carve_validation(make_items(), num_ids=num_ids, seed=seed)
