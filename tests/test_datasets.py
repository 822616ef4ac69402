"""Tests of the dataset parsers on tiny hand-made trees with the real naming.

The parsers never open an image (they read directory listings and list files only), so the fixtures are
zero-byte files: fast, and enough to prove the parsing. Expected lists are computed by hand.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from reidkit.data.datasets import (
    CUHK03NP,
    DATASETS,
    MSMT17,
    DatasetError,
    DatasetSizeWarning,
    DukeMTMCreID,
    ImageFolderReID,
    Market1501,
    NoCameraWarning,
    ReIDItem,
    SplitStats,
    SynthReID,
    build_dataset,
)


def touch(root: Path, *names: str) -> None:
    """Create zero-byte files (and their folders) below ``root``."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def make_market(root: Path, train: list[str], query: list[str], gallery: list[str]) -> Path:
    """A Market-1501 layout in ``root``; every split folder exists even when its list is empty."""
    for sub, names in (("bounding_box_train", train), ("query", query), ("bounding_box_test", gallery)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        touch(root / sub, *names)
    return root


def item(root: Path, rel: str, pid: int, camid: int) -> ReIDItem:
    return ReIDItem(str(root / rel), pid, camid)


def size_warnings(record) -> list[str]:
    """The messages of the recorded warnings, all of which must be size warnings."""
    assert all(issubclass(w.category, DatasetSizeWarning) for w in record)
    return [str(w.message) for w in record]


@pytest.fixture(autouse=True)
def _no_stray_warnings():
    """Every test runs with warnings as errors unless it expects one with ``pytest.warns``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------------------- Market-1501

MARKET_TRAIN = ["0100_c3s1_000100_00.jpg", "0002_c1s1_000451_03.jpg", "0010_c2s1_000200_01.jpg",
                "0002_c6s2_000500_00.jpg", "Thumbs.db"]
MARKET_QUERY = ["0010_c1s1_000002_00.jpg", "0002_c2s1_000001_00.jpg"]
MARKET_GALLERY = ["-1_c1s1_000001_00.jpg", "0000_c4s1_000003_00.jpg", "0002_c1s1_000004_00.jpg",
                  "0010_c5s1_000005_00.jpg", "Thumbs.db"]


def test_market_exact_lists_misleading_parent_and_thumbs(tmp_path, caplog):
    # The dataset sits one level down, inside a folder named like a Market file name prefix.
    data = make_market(tmp_path / "0001_c1s1" / "market_fixture", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    touch(data / "bounding_box_train" / "0099_c3", "0099_c3s1_000001_00.jpg")  # a sub-folder: not a split image
    caplog.set_level(logging.DEBUG, logger="reidkit.data.datasets")

    ds = Market1501(tmp_path / "0001_c1s1")

    assert ds.root == data
    t, q, g = data / "bounding_box_train", data / "query", data / "bounding_box_test"
    # Train sorted by path; pids 2, 10, 100 relabelled 0, 1, 2 (integer order, not string order).
    assert ds.train == [
        item(t, "0002_c1s1_000451_03.jpg", 0, 0),
        item(t, "0002_c6s2_000500_00.jpg", 0, 5),
        item(t, "0010_c2s1_000200_01.jpg", 1, 1),
        item(t, "0100_c3s1_000100_00.jpg", 2, 2),
    ]
    assert ds.train_pid_map == {2: 0, 10: 1, 100: 2}
    assert ds.query == [item(q, "0002_c2s1_000001_00.jpg", 2, 1), item(q, "0010_c1s1_000002_00.jpg", 10, 0)]
    # Junk -1 dropped; distractor 0000 kept in the gallery with its pid 0.
    assert ds.gallery == [
        item(g, "0000_c4s1_000003_00.jpg", 0, 3),
        item(g, "0002_c1s1_000004_00.jpg", 2, 0),
        item(g, "0010_c5s1_000005_00.jpg", 10, 4),
    ]
    assert ds.junk_dropped == {"train": 0, "query": 0, "gallery": 1}
    assert (ds.num_train_pids, ds.num_train_cams, ds.num_train_imgs) == (3, 4, 4)
    assert all(isinstance(x.path, str) for x in ds.train + ds.query + ds.gallery)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("ignored 2 entries" in m and "bounding_box_train" in m and "0099_c3" in m for m in debug)
    assert any("ignored 1 entries" in m and "Thumbs.db" in m for m in debug)


def test_market_statistics_and_summary(tmp_path):
    ds = Market1501(make_market(tmp_path / "mkt", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY))
    assert ds.statistics() == {
        "train": SplitStats(4, 3, 4),
        "query": SplitStats(2, 2, 2),
        "gallery": SplitStats(3, 3, 3),
    }
    expected = "\n".join([
        "Market-1501 (market1501)",
        "  split    images  ids  cameras",
        "  train         4    3        4",
        "  query         2    2        2",
        "  gallery       3    3        3",
        "  distractors (pid 0) in gallery: 1",
        "  junk (pid -1) dropped: gallery 1",
    ])
    assert ds.summary() == expected
    assert repr(ds) == expected
    assert str(tmp_path) not in ds.summary()


@pytest.mark.parametrize(
    ("bad_name", "message"),
    [
        ("0002_c1_000451.jpg", "does not match the expected pattern"),  # Duke-like name in Market
        ("0002_c1s1_000451_03.JPG", "does not match the expected pattern"),  # wrong-case extension
        ("0002_c7s1_000451_03.jpg", "camera 7 out of range 1..6"),
        ("0002_c0s1_000451_03.jpg", "camera 0 out of range 1..6"),
        ("1502_c1s1_000451_03.jpg", "pid 1502 out of range 0..1501"),
    ],
)
def test_market_bad_file_name_is_an_error_naming_the_file(tmp_path, bad_name, message):
    make_market(tmp_path / "mkt", MARKET_TRAIN + [bad_name], MARKET_QUERY, MARKET_GALLERY)
    with pytest.raises(DatasetError, match=message) as err:
        Market1501(tmp_path / "mkt")
    assert bad_name in str(err.value)
    assert r"_c(?P<cam>\d)s" in str(err.value)  # the expected pattern is quoted


def test_market_distractor_in_train_is_an_error(tmp_path):
    make_market(tmp_path / "mkt", MARKET_TRAIN + ["0000_c1s1_000001_00.jpg"], MARKET_QUERY, MARKET_GALLERY)
    with pytest.raises(DatasetError, match="0000_c1s1_000001_00.jpg: distractor pid 0 in split 'train'"):
        Market1501(tmp_path / "mkt")


def test_market_empty_split_is_an_error(tmp_path):
    make_market(tmp_path / "mkt", MARKET_TRAIN, ["Thumbs.db"], MARKET_GALLERY)
    with pytest.raises(DatasetError, match=r"split 'query' is empty: no usable images in .*query") as err:
        Market1501(tmp_path / "mkt")
    assert "bounding_box_train/" in str(err.value)  # the expected layout is listed


def test_market_split_of_only_junk_is_empty(tmp_path):
    make_market(tmp_path / "mkt", MARKET_TRAIN, MARKET_QUERY, ["-1_c1s1_000001_00.jpg"])
    with pytest.raises(DatasetError, match="split 'gallery' is empty"):
        Market1501(tmp_path / "mkt")


def test_market_missing_folder_is_an_error(tmp_path):
    make_market(tmp_path / "mkt", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    (tmp_path / "mkt" / "query").rename(tmp_path / "mkt" / "queries")
    with pytest.raises(DatasetError, match=r"missing .*mkt/query\b") as err:
        Market1501(tmp_path / "mkt")
    assert "Expected layout" in str(err.value)


def test_root_discovery_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        Market1501(tmp_path / "nowhere")
    (tmp_path / "empty" / "other").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no Market-1501 dataset found in"):
        Market1501(tmp_path / "empty")
    make_market(tmp_path / "two" / "a", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    make_market(tmp_path / "two" / "b", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    with pytest.raises(DatasetError, match="2 candidate dataset folders") as err:
        Market1501(tmp_path / "two")
    assert str(tmp_path / "two" / "a") in str(err.value) and str(tmp_path / "two" / "b") in str(err.value)


def test_market_size_check_warns_on_the_release_folder(tmp_path):
    make_market(tmp_path / "Market-1501-v15.09.15", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    with pytest.warns(DatasetSizeWarning) as record:
        ds = Market1501(tmp_path)  # found one level down, and named like the release
    messages = size_warnings(record)
    assert len(messages) == 3
    assert "Market-1501 (market1501): split 'train' has 4 images, 3 ids, expected 12,936 images, 751 ids" in messages[0]
    assert "split 'query'" in messages[1] and "3,368" in messages[1]
    assert "split 'gallery'" in messages[2] and "15,913" in messages[2]
    assert ds.is_release()


def test_a_generated_dataset_is_never_size_checked_as_the_release(tmp_path):
    data = make_market(tmp_path / "Market-1501-v15.09.15", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    (data / "synthreid.json").write_text("{}")
    ds = Market1501(data)  # warnings are errors in this module: no DatasetSizeWarning may fire
    assert not ds.is_release()


def test_market500k_appends_images_folder_with_relaxed_names(tmp_path):
    data = make_market(tmp_path / "mkt", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    touch(data / "images", "0000_c2s3_123456_07.jpg", "0000_c6_distractor_41.jpg", "-1_c3_x.jpg", "Thumbs.db")
    plain = Market1501(data)
    assert len(plain.gallery) == 3  # images/ is ignored without the flag
    ds = Market1501(data, market500k=True)
    extra = data / "images"
    assert ds.gallery == [
        item(data / "bounding_box_test", "0000_c4s1_000003_00.jpg", 0, 3),
        item(data / "bounding_box_test", "0002_c1s1_000004_00.jpg", 2, 0),
        item(data / "bounding_box_test", "0010_c5s1_000005_00.jpg", 10, 4),
        item(extra, "0000_c2s3_123456_07.jpg", 0, 1),
        item(extra, "0000_c6_distractor_41.jpg", 0, 5),
    ]
    assert ds.num_extra_gallery == 2
    assert ds.junk_dropped["gallery"] == 2
    assert ds.summary().endswith("Market1501-500k: 2 extra gallery distractors from images/")


def test_market500k_errors(tmp_path):
    data = make_market(tmp_path / "mkt", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    with pytest.raises(DatasetError, match=r"missing .*images"):
        Market1501(data, market500k=True)
    touch(data / "images", "distractor_0001.jpg")
    with pytest.raises(DatasetError, match="distractor_0001.jpg.*does not match"):
        Market1501(data, market500k=True)


# ------------------------------------------------------------------------------------------ SynthReID


def test_synthreid_parses_like_market_with_four_digit_pids_and_no_size_check(tmp_path):
    data = make_market(
        tmp_path / "Market-1501-v15.09.15",  # even a release-like name never triggers the Market size check
        ["5000_c6s1_000001_00.jpg", "0003_c1s1_000002_00.jpg"],
        ["5000_c1s1_000003_00.jpg"],
        ["-1_c2s1_000004_00.jpg", "0000_c3s1_000005_00.jpg", "5000_c2s1_000006_00.jpg"],
    )
    ds = SynthReID(tmp_path)
    assert ds.name == "synthreid"
    assert ds.train == [item(data / "bounding_box_train", "0003_c1s1_000002_00.jpg", 0, 0),
                        item(data / "bounding_box_train", "5000_c6s1_000001_00.jpg", 1, 5)]
    assert ds.query == [item(data / "query", "5000_c1s1_000003_00.jpg", 5000, 0)]
    assert ds.gallery == [item(data / "bounding_box_test", "0000_c3s1_000005_00.jpg", 0, 2),
                          item(data / "bounding_box_test", "5000_c2s1_000006_00.jpg", 5000, 1)]
    assert ds.summary().startswith("SynthReID (synthreid)\n")
    with pytest.raises(DatasetError, match="pid 5000 out of range 0..1501"):
        Market1501(data)


# --------------------------------------------------------------------------------------- DukeMTMC-reID


def test_duke_found_one_level_down_with_size_warning(tmp_path):
    data = make_market(
        tmp_path / "DukeMTMC-reID",
        ["0005_c2_f0046985.jpg", "0001_c8_f0000001.jpg", "Thumbs.db"],
        ["0005_c1_f0000002.jpg"],
        ["0005_c3_f0000003.jpg", "0099_c7_f0000004.jpg"],
    )
    with pytest.warns(DatasetSizeWarning) as record:
        ds = DukeMTMCreID(tmp_path)
    messages = size_warnings(record)
    assert len(messages) == 3
    assert "DukeMTMC-reID (dukemtmcreid): split 'train' has 2 images, 2 ids, expected 16,522 images, 702 ids" \
        in messages[0]
    t, q, g = data / "bounding_box_train", data / "query", data / "bounding_box_test"
    assert ds.train == [item(t, "0001_c8_f0000001.jpg", 0, 7), item(t, "0005_c2_f0046985.jpg", 1, 1)]
    assert ds.query == [item(q, "0005_c1_f0000002.jpg", 5, 0)]
    assert ds.gallery == [item(g, "0005_c3_f0000003.jpg", 5, 2), item(g, "0099_c7_f0000004.jpg", 99, 6)]


@pytest.mark.parametrize(("bad_name", "message"), [
    ("0005_c9_f0000001.jpg", "camera 9 out of range 1..8"),
    ("0005_c1s1_000001_00.jpg", "does not match"),  # a Market name in Duke
    ("-1_c1_f0000001.jpg", "does not match"),  # Duke has no junk
])
def test_duke_bad_names(tmp_path, bad_name, message):
    make_market(tmp_path / "duke", ["0005_c2_f0046985.jpg", bad_name], ["0005_c1_f0000002.jpg"],
                ["0005_c3_f0000003.jpg"])
    with pytest.raises(DatasetError, match=message) as err:
        DukeMTMCreID(tmp_path / "duke")
    assert bad_name in str(err.value)


# -------------------------------------------------------------------------------------------- MSMT17

MSMT_TRAIN = ["0001/0001_000_03_0303morning_0015_0.jpg", "0000/0000_000_01_0303morning_0015_0.jpg",
              "0000/0000_001_15_0303noon_0020_1.jpg"]
MSMT_VAL = ["0001/0001_001_02_0303afternoon_0100_0.jpg"]
MSMT_QUERY = ["0000/0000_000_05_0114morning_0001_0.jpg"]
MSMT_GALLERY = ["0000/0000_001_06_0114noon_0002_0.jpg", "0002/0002_000_10_0114noon_0003_0.jpg"]


def make_msmt(root: Path, version: str = "V1", **overrides: list[str]) -> tuple[Path, Path, Path]:
    train_dir, test_dir = ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    lists = {"train": MSMT_TRAIN, "val": MSMT_VAL, "query": MSMT_QUERY, "gallery": MSMT_GALLERY, **overrides}
    for split, rels in lists.items():
        image_dir = root / (train_dir if split in ("train", "val") else test_dir)
        touch(image_dir, *rels)
        lines = [f"{rel} {int(rel.split('/')[0])}\n" for rel in rels]
        (root / f"list_{split}.txt").write_text("".join(lines), encoding="utf-8")
    return root, root / train_dir, root / test_dir


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_lists_versions_and_combine_val(tmp_path, version):
    root, train_dir, test_dir = make_msmt(tmp_path / f"msmt_{version.lower()}", version)
    touch(train_dir, "0000/Thumbs.db")  # unlisted files are not images of any split
    ds = MSMT17(tmp_path)  # found one level down
    assert ds.version == version
    assert ds.train == [
        item(train_dir, "0000/0000_000_01_0303morning_0015_0.jpg", 0, 0),
        item(train_dir, "0000/0000_001_15_0303noon_0020_1.jpg", 0, 14),
        item(train_dir, "0001/0001_000_03_0303morning_0015_0.jpg", 1, 2),
    ]
    assert ds.query == [item(test_dir, "0000/0000_000_05_0114morning_0001_0.jpg", 0, 4)]
    assert ds.gallery == [item(test_dir, "0000/0000_001_06_0114noon_0002_0.jpg", 0, 5),
                          item(test_dir, "0002/0002_000_10_0114noon_0003_0.jpg", 2, 9)]
    combined = MSMT17(root, combine_val=True)
    assert combined.train == [
        item(train_dir, "0000/0000_000_01_0303morning_0015_0.jpg", 0, 0),
        item(train_dir, "0000/0000_001_15_0303noon_0020_1.jpg", 0, 14),
        item(train_dir, "0001/0001_000_03_0303morning_0015_0.jpg", 1, 2),
        item(train_dir, "0001/0001_001_02_0303afternoon_0100_0.jpg", 1, 1),
    ]
    assert f"version: {version}; training split: train + val lists" in combined.summary()


def test_msmt17_release_folder_size_check(tmp_path):
    make_msmt(tmp_path / "MSMT17_V2", "V2")
    with pytest.warns(DatasetSizeWarning) as record:
        MSMT17(tmp_path / "MSMT17_V2", combine_val=True)
    messages = size_warnings(record)
    assert "split 'train' has 4 images, 2 ids, expected 32,621 images, 1,041 ids" in messages[0]
    assert "split 'gallery' has 2 images, 2 ids, expected 82,161 images, 3,060 ids" in messages[2]


def test_msmt17_errors(tmp_path):
    root, train_dir, _ = make_msmt(tmp_path / "a")
    (root / "list_query.txt").write_text("0000/0000_000_05_0114morning_0001_0.jpg\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"list_query.txt:1: expected '<relative path> <pid>'"):
        MSMT17(root)

    root, _, _ = make_msmt(tmp_path / "b")
    (root / "list_gallery.txt").write_text("0009/0009_000_01_0114noon_0001_0.jpg 9\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"list_gallery.txt:1: listed image .*0009_000_01_0114noon_0001_0.jpg does not exist"):
        MSMT17(root)

    root, _, _ = make_msmt(tmp_path / "c", gallery=["0000/0000_000_16_0114noon_0001_0.jpg"])
    with pytest.raises(DatasetError, match=r"list_gallery.txt:1: .*camera 16 out of range 1..15"):
        MSMT17(root)

    root, _, _ = make_msmt(tmp_path / "d", query=["0000/0000_c1s1_000001_00.jpg"])
    with pytest.raises(DatasetError, match=r"list_query.txt:1: .*0000_c1s1_000001_00.jpg.*does not match"):
        MSMT17(root)

    root, _, _ = make_msmt(tmp_path / "e")
    (root / "mask_train_v2").mkdir()
    with pytest.raises(DatasetError, match="both the V1 and the V2 image folders"):
        MSMT17(root)


# ------------------------------------------------------------------------------------------- CUHK03-NP


def make_cuhk(root: Path) -> Path:
    for variant, extra in (("labeled", "0003_c2_5.png"), ("detected", "0003_c2_9.png")):
        make_market(root / variant, ["0010_c1_1.png", "0003_c1_2.png", extra, "Thumbs.db"],
                    ["0700_c1_1.png", "0700_c2_6.png"], ["0700_c2_7.png", "0800_c1_3.png", "stray.jpg"])
    return root


@pytest.mark.parametrize(("variant", "extra"), [("labeled", "0003_c2_5.png"), ("detected", "0003_c2_9.png")])
def test_cuhk03np_variants(tmp_path, variant, extra):
    root = make_cuhk(tmp_path / "cuhk03-np-fixture")
    ds = CUHK03NP(tmp_path, variant=variant)
    base = root / variant
    t, q, g = base / "bounding_box_train", base / "query", base / "bounding_box_test"
    assert ds.train == [item(t, "0003_c1_2.png", 0, 0), item(t, extra, 0, 1), item(t, "0010_c1_1.png", 1, 0)]
    assert ds.query == [item(q, "0700_c1_1.png", 700, 0), item(q, "0700_c2_6.png", 700, 1)]
    assert ds.gallery == [item(g, "0700_c2_7.png", 700, 1), item(g, "0800_c1_3.png", 800, 0)]
    assert f"variant: {variant}" in ds.summary()


def test_cuhk03np_variant_is_required_and_checked(tmp_path):
    root = make_cuhk(tmp_path / "cuhk")
    with pytest.raises(TypeError, match="variant"):
        CUHK03NP(root)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="variant must be one of 'labeled', 'detected'"):
        CUHK03NP(root, variant="Labeled")
    with pytest.raises(ValueError, match="requires option.* variant"):
        build_dataset("cuhk03np", root)
    touch(root / "labeled" / "query", "0700_c3_2.png")
    with pytest.raises(DatasetError, match="0700_c3_2.png: camera 3 out of range 1..2"):
        CUHK03NP(root, variant="labeled")


def test_cuhk03np_size_warning_for_release_name(tmp_path):
    make_cuhk(tmp_path / "cuhk03-np")
    with pytest.warns(DatasetSizeWarning) as record:
        CUHK03NP(tmp_path, variant="detected")
    messages = size_warnings(record)
    assert "CUHK03-NP (cuhk03np): split 'train' has 3 images, 2 ids, expected 7,365 images, 767 ids" in messages[0]
    assert "split 'gallery' has 2 images, 2 ids, expected 5,332 images, 700 ids" in messages[2]


# ------------------------------------------------------------------------------------- ImageFolderReID


def test_imagefolder_folders_with_cameras(tmp_path):
    root = tmp_path / "mine"
    touch(root / "train", "2/a_c1_01.jpg", "10/b_c2_01.png", "100/c_c3_01.jpg", "100/notes.txt", "10/x_c12.jpeg")
    touch(root / "query", "7/q_c1_01.jpg", "-1/j_c2.jpg")
    touch(root / "gallery", "7/g_c2_01.jpg", "0/d_c1_01.jpg", "Thumbs.db")
    ds = build_dataset("imagefolder", tmp_path)
    t, q, g = root / "train", root / "query", root / "gallery"
    assert ds.train == [  # folders 2, 10, 100 -> labels 0, 1, 2 (integer order)
        item(t, "10/b_c2_01.png", 1, 1),
        item(t, "10/x_c12.jpeg", 1, 11),
        item(t, "100/c_c3_01.jpg", 2, 2),
        item(t, "2/a_c1_01.jpg", 0, 0),
    ]
    assert ds.query == [item(q, "7/q_c1_01.jpg", 7, 0)]
    assert ds.gallery == [item(g, "0/d_c1_01.jpg", 0, 0), item(g, "7/g_c2_01.jpg", 7, 1)]
    assert ds.has_cameras and ds.mode == "folders"


def test_imagefolder_folders_without_cameras(tmp_path):
    touch(tmp_path / "train", "3/a.jpg", "4/b.jpg")
    touch(tmp_path / "query", "3/c.jpg")
    touch(tmp_path / "gallery", "3/d.jpg", "5/e.jpg")
    with pytest.warns(NoCameraWarning, match="query camid 0, gallery camid 1"):
        ds = ImageFolderReID(tmp_path, camera_pattern=None)
    assert ds.train == [item(tmp_path, "train/3/a.jpg", 0, 0), item(tmp_path, "train/4/b.jpg", 1, 0)]
    assert ds.query == [item(tmp_path, "query/3/c.jpg", 3, 0)]
    assert ds.gallery == [item(tmp_path, "gallery/3/d.jpg", 3, 1), item(tmp_path, "gallery/5/e.jpg", 5, 1)]
    assert "easier task than the benchmarks" in ds.summary()


@pytest.mark.parametrize(("layout", "message"), [
    (["train/alice/a_c1.jpg"], r"alice: identity folder name must be an integer pid"),
    (["train/3/a.jpg"], r"a.jpg: no camera in file name 'a.jpg'; expected camera_pattern _c\(\\d\+\)"),
    (["train/3/a_c0.jpg"], r"a_c0.jpg: camera 0 out of range"),
    (["train/a_c1.jpg"], r"a_c1.jpg: image directly in .*train"),
    (["train/3/sub/a_c1.jpg"], r"sub: unexpected folder"),
])
def test_imagefolder_folder_errors(tmp_path, layout, message):
    touch(tmp_path, "train/1/z_c1.jpg", "query/1/q_c1.jpg", "gallery/1/g_c2.jpg", *layout)
    with pytest.raises(DatasetError, match=message):
        ImageFolderReID(tmp_path)


def test_imagefolder_csv_with_and_without_cameras(tmp_path):
    touch(tmp_path / "imgs", "a.jpg", "b.jpg", "c.jpg", "d.png", "e.jpg")
    (tmp_path / "train.csv").write_text("path,pid,camid\nimgs/b.jpg,100,2\nimgs/a.jpg,2,0\n")
    (tmp_path / "query.csv").write_text("path,pid,camid\nimgs/c.jpg,5,0\nimgs/e.jpg,-1,0\n")
    (tmp_path / "gallery.csv").write_text(f"path,pid,camid\n{tmp_path / 'imgs' / 'd.png'},5,3\n")
    ds = ImageFolderReID(tmp_path)
    assert ds.mode == "csv"
    assert ds.train == [item(tmp_path, "imgs/a.jpg", 0, 0), item(tmp_path, "imgs/b.jpg", 1, 2)]
    assert ds.query == [item(tmp_path, "imgs/c.jpg", 5, 0)]
    assert ds.gallery == [item(tmp_path, "imgs/d.png", 5, 3)]

    (tmp_path / "train.csv").write_text("path,pid\nimgs/b.jpg,100\nimgs/a.jpg,2\n")
    (tmp_path / "query.csv").write_text("path,pid,camid\nimgs/c.jpg,5,\n")
    (tmp_path / "gallery.csv").write_text("path,pid\nimgs/d.png,5\nimgs/e.jpg,6\n")
    with pytest.warns(NoCameraWarning, match="same-camera filter removes nothing"):
        ds = ImageFolderReID(tmp_path)
    assert ds.query == [item(tmp_path, "imgs/c.jpg", 5, 0)]
    assert ds.gallery == [item(tmp_path, "imgs/d.png", 5, 1), item(tmp_path, "imgs/e.jpg", 6, 1)]
    assert [x.camid for x in ds.train] == [0, 0]


@pytest.mark.parametrize(("gallery_csv", "message"), [
    ("path,pid,camid\nimgs/d.png,5,\n", r"gallery.csv: no camid for .*d.png while other rows have one"),
    ("path,pid,camid\nimgs/zzz.png,5,1\n", r"gallery.csv:2: image .*zzz.png does not exist"),
    ("path,pid,camid\nimgs/d.png,five,1\n", r"gallery.csv:2: pid must be an integer"),
    ("path,pid,camid\nimgs/d.png,5,-1\n", r"gallery.csv:2: camid must be a non-negative integer"),
    ("file,id\nimgs/d.png,5\n", r"gallery.csv: header must be 'path,pid,camid'"),
    ("path,pid,camid\n", r"split 'gallery' is empty"),
    ("path,pid,camid\nimgs/d.png,5,1,extra\n", r"gallery.csv:2: more fields than the header"),
    ("path,pid,camid\nimgs/d.png,5,1\nimgs/d.png,5,1\n", r"gallery.csv:3: .*d.png is listed twice"),
])
def test_imagefolder_csv_errors(tmp_path, gallery_csv, message):
    touch(tmp_path / "imgs", "a.jpg", "c.jpg", "d.png")
    (tmp_path / "train.csv").write_text("path,pid,camid\nimgs/a.jpg,2,0\n")
    (tmp_path / "query.csv").write_text("path,pid,camid\nimgs/c.jpg,5,0\n")
    (tmp_path / "gallery.csv").write_text(gallery_csv)
    with pytest.raises(DatasetError, match=message):
        ImageFolderReID(tmp_path)


# -------------------------------------------------------------------------------------- build_dataset


def test_registry_names_and_errors(tmp_path):
    assert DATASETS == {"market1501": Market1501, "dukemtmcreid": DukeMTMCreID, "msmt17": MSMT17,
                        "cuhk03np": CUHK03NP, "imagefolder": ImageFolderReID, "synthreid": SynthReID}
    with pytest.raises(ValueError, match="unknown dataset 'market'; valid names: cuhk03np, dukemtmcreid, "
                                         "imagefolder, market1501, msmt17, synthreid"):
        build_dataset("market", tmp_path)
    with pytest.raises(ValueError, match="unknown option.* combine_val for dataset 'market1501'; "
                                         "valid options: market500k"):
        build_dataset("market1501", tmp_path, combine_val=True)
    with pytest.raises(ValueError, match="valid options: none"):
        build_dataset("synthreid", tmp_path, market500k=True)
    make_market(tmp_path / "mkt", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    ds = build_dataset("market1501", tmp_path / "mkt", market500k=False)
    assert isinstance(ds, Market1501) and len(ds.train) == 4


def test_msmt17_pid_comes_from_the_list_and_lists_are_sorted(tmp_path):
    root, _, test_dir = make_msmt(tmp_path / "m")
    touch(test_dir, "0000/0000_002_07_0114noon_0004_0.jpg")
    (root / "list_query.txt").write_text(
        "0000/0000_002_07_0114noon_0004_0.jpg 7\n\n0000/0000_000_05_0114morning_0001_0.jpg 7\n", encoding="utf-8"
    )
    ds = MSMT17(root)
    assert ds.query == [item(test_dir, "0000/0000_000_05_0114morning_0001_0.jpg", 7, 4),
                        item(test_dir, "0000/0000_002_07_0114noon_0004_0.jpg", 7, 6)]


def test_item_labels_are_int64_arrays_in_item_order() -> None:
    import numpy as np

    from reidkit.data.datasets.base import item_labels

    items = [ReIDItem("a.jpg", 7, 2), ReIDItem("b.jpg", -1, 0), ReIDItem("c.jpg", 3, 5)]
    pids, camids = item_labels(items)
    assert pids.dtype == np.int64 and camids.dtype == np.int64
    assert pids.tolist() == [7, -1, 3] and camids.tolist() == [2, 0, 5]
    empty_pids, empty_camids = item_labels([])
    assert empty_pids.shape == (0,) and empty_camids.shape == (0,)
