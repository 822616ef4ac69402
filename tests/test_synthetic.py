"""SynthReID: determinism, Market-1501 layout and naming, splits, presets, caching and atomic writes.

The session fixture ``synthreid_tiny`` (tests/conftest.py) is generated once; tests that need more
datasets use ``MINI``, a preset of a few identities, so that the file stays fast.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import reidkit.data.synthetic.generate as generate_module
from reidkit.data.datasets import Market1501, SynthReID
from reidkit.data.datasets.market1501 import MARKET_REGEX
from reidkit.data.synthetic import (
    GENERATOR_VERSION,
    MANIFEST,
    PRESETS,
    SynthPreset,
    dataset_identities,
    default_data_root,
    ensure_synthreid,
    generate_synthreid,
    read_manifest,
    render_identity_sheet,
)
from reidkit.data.synthetic.identity import DERIVABLE, Identity
from reidkit.data.synthetic.plan import plan_dataset

MINI = SynthPreset(
    name="mini", num_train_ids=4, num_test_ids=4, train_images_per_camera=(1, 2),
    test_images_per_camera=(2, 2), num_distractors=3, num_junk=2, single_camera_fraction=0.25,
)
FOLDERS = ("bounding_box_train", "query", "bounding_box_test")


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root``, keyed by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*")) if path.is_file()
    }


def parsed_names(root: Path) -> dict[str, list[tuple[int, int, str]]]:
    """``{folder: [(pid, camera 1..6, name), ...]}`` parsed with Market's regex."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for folder in FOLDERS:
        rows = []
        for name in sorted(os.listdir(root / folder)):
            match = MARKET_REGEX.fullmatch(name)
            assert match is not None, f"{folder}/{name} does not match {MARKET_REGEX.pattern}"
            rows.append((int(match.group("pid")), int(match.group("cam")), name))
        out[folder] = rows
    return out


# ------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(synthreid_tiny, tmp_path):
    again = tmp_path / "again"
    generate_synthreid(again, preset="tiny", seed=0)
    first, second = digests(synthreid_tiny), digests(again)
    assert MANIFEST in first
    assert len(first) > 500
    assert first == second


def test_other_seed_gives_another_dataset(tmp_path):
    a, b = digests(_mini(tmp_path / "a", seed=0)), digests(_mini(tmp_path / "b", seed=1))
    assert set(a.values()).isdisjoint(set(b.values()))
    assert set(a) != set(b)  # other pids, cameras and frames


def test_two_workers_write_the_same_bytes_as_one(tmp_path):
    one = generate_synthreid(tmp_path / "w1", preset=MINI, seed=3, workers=1)
    two = generate_synthreid(tmp_path / "w2", preset=MINI, seed=3, workers=2)
    assert digests(tmp_path / "w1") == digests(tmp_path / "w2")
    assert str(one) == str(two)


def _mini(out: Path, seed: int = 0) -> Path:
    generate_synthreid(out, preset=MINI, seed=seed)
    return out


# ---------------------------------------------------------------------------------- layout, naming


def test_every_file_is_a_market_named_64x128_rgb_jpeg(synthreid_tiny):
    names = parsed_names(synthreid_tiny)
    all_names = [name for rows in names.values() for _, _, name in rows]
    assert len(all_names) == len(set(all_names)), "file names must be unique across folders"
    assert sorted(p.name for p in synthreid_tiny.iterdir()) == sorted([*FOLDERS, MANIFEST])
    for folder, rows in names.items():
        for pid, cam, name in rows:
            assert 1 <= cam <= 6
            with Image.open(synthreid_tiny / folder / name) as img:
                assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 128))


def test_parses_with_market1501_and_synthreid(synthreid_tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        market = Market1501(synthreid_tiny)
        synth = SynthReID(synthreid_tiny)
    counts = read_manifest(synthreid_tiny)["counts"]
    for ds in (market, synth):
        stats = ds.statistics()
        for split in ("train", "query", "gallery"):
            assert stats[split]._asdict() == counts[split]
        assert ds.junk_dropped == {"train": 0, "query": 0, "gallery": counts["junk"]}
    assert synth.num_train_pids == PRESETS["tiny"].num_train_ids


def test_train_and_test_identities_are_disjoint_and_shuffled(synthreid_tiny):
    names = parsed_names(synthreid_tiny)
    train = {pid for pid, _, _ in names["bounding_box_train"]}
    test = {pid for pid, _, _ in names["query"] + names["bounding_box_test"] if pid > 0}
    preset = PRESETS["tiny"]
    assert len(train) == preset.num_train_ids and len(test) == preset.num_test_ids
    assert not train & test
    assert train | test == set(range(1, preset.num_train_ids + preset.num_test_ids + 1))
    for pids in (train, test):  # neither set is a contiguous block
        assert max(pids) - min(pids) + 1 > len(pids)


def test_one_query_per_camera_of_multi_camera_test_ids_with_a_cross_camera_match(synthreid_tiny):
    names = parsed_names(synthreid_tiny)
    test_cams: dict[int, set[int]] = defaultdict(set)
    gallery: dict[int, set[int]] = defaultdict(set)
    for pid, cam, _ in names["query"] + names["bounding_box_test"]:
        if pid > 0:
            test_cams[pid].add(cam)
    for pid, cam, _ in names["bounding_box_test"]:
        gallery[pid].add(cam)
    queries = [(pid, cam) for pid, cam, _ in names["query"]]
    assert len(queries) == len(set(queries)), "at most one query per (identity, camera)"
    expected = {(pid, cam) for pid, cams in test_cams.items() if len(cams) >= 2 for cam in cams}
    assert set(queries) == expected
    singles = [pid for pid, cams in test_cams.items() if len(cams) == 1]
    assert len(singles) == PRESETS["tiny"].num_single_camera >= 1
    for pid, cam in queries:
        assert gallery[pid] - {cam}, f"query {pid} c{cam} has no gallery match in another camera"


def test_distractors_and_junk_are_in_the_gallery_folder_only(synthreid_tiny):
    names = parsed_names(synthreid_tiny)
    for folder in ("bounding_box_train", "query"):
        assert all(pid > 0 for pid, _, _ in names[folder])
    gallery_pids = [pid for pid, _, _ in names["bounding_box_test"]]
    preset = PRESETS["tiny"]
    assert gallery_pids.count(0) == preset.num_distractors
    assert gallery_pids.count(-1) == preset.num_junk
    assert all(name.startswith("-1_c") for pid, _, name in names["bounding_box_test"] if pid == -1)


# ------------------------------------------------------------------------------------------ presets


def test_tiny_counts_are_within_the_preset_bounds(synthreid_tiny):
    counts = read_manifest(synthreid_tiny)["counts"]
    bounds = PRESETS["tiny"].image_bounds()
    for split, (lo, hi) in bounds.items():
        assert lo <= counts[split]["images"] <= hi
    assert 500 <= counts["files"] <= 1000
    assert counts["train"]["ids"] == 40 and counts["train"]["cameras"] == 6


@pytest.mark.parametrize(
    ("name", "train", "query", "gallery_folder"),
    [("small", (1_500, 2_600), (350, 500), (1_300, 2_200)),
     ("market", (12_000, 14_500), (3_000, 3_700), (18_500, 21_500))],
)
def test_larger_presets_plan_their_stated_sizes(name, train, query, gallery_folder):
    preset = PRESETS[name]
    plan = plan_dataset(preset, seed=0)
    per_folder: dict[str, int] = defaultdict(int)
    for spec in plan.images:
        per_folder[spec.folder] += 1
    assert train[0] <= per_folder["bounding_box_train"] <= train[1]
    assert query[0] <= per_folder["query"] <= query[1]
    assert gallery_folder[0] <= per_folder["bounding_box_test"] <= gallery_folder[1]
    assert len(plan.split_pids("train")) == preset.num_train_ids
    assert len(plan.split_pids("test")) == preset.num_test_ids


def test_about_thirty_percent_of_identities_are_confusable_copies(synthreid_tiny):
    identities = read_manifest(synthreid_tiny)["identities"]
    derived = {pid: ident for pid, ident in identities.items() if ident["derived_from"] is not None}
    assert 0.15 * len(identities) <= len(derived) <= 0.45 * len(identities)
    compared = ("upper", "pattern", "sleeves", "lower", "lower_kind", "shoes", "bag", "hair")
    for pid, ident in derived.items():
        parent = identities[f"{ident['derived_from']:04d}"]
        assert parent["split"] == ident["split"] and parent["derived_from"] is None
        assert 1 <= len(ident["changed"]) <= 2 and set(ident["changed"]) <= set(DERIVABLE)
        differing = [key for key in compared if ident[key] != parent[key]]
        assert differing, f"{pid} is identical to its parent"
        assert ident["skin"] == parent["skin"]


def test_manifest_describes_every_identity_with_its_attributes(synthreid_tiny):
    data = read_manifest(synthreid_tiny)
    assert (data["preset"], data["seed"], data["generator_version"]) == ("tiny", 0, GENERATOR_VERSION)
    assert len(data["identities"]) == 70 and len(data["cameras"]) == 6
    ident = data["identities"]["0001"]
    for key in ("upper", "lower", "lower_kind", "sleeves", "pattern", "shoes", "bag", "bag_colour", "hair",
                "hair_length", "skin", "build", "cameras", "description"):
        assert key in ident
    assert isinstance(ident["upper"]["name"], str) and len(ident["upper"]["rgb"]) == 3


def test_summary_text_is_a_deterministic_table(tmp_path):
    summary = generate_synthreid(tmp_path / "s", preset=MINI, seed=0)
    text = str(summary)
    assert text.splitlines()[0] == f"SynthReID preset 'mini', seed 0 (generator v{GENERATOR_VERSION})"
    assert "split" in text and "distractors (pid 0) in gallery: 3" in text
    assert "junk (pid -1) in bounding_box_test: 2" in text
    assert str(tmp_path) not in text
    assert summary.num_files == sum(1 for p in (tmp_path / "s").rglob("*.jpg"))


# ---------------------------------------------------------------------------------------- rendering


def test_identity_sheet_shows_the_logo_from_the_front_only():
    ident = next(i for i in dataset_identities("tiny", 0).values() if i.pattern == "logo")
    plain = replace(ident, pattern="solid")
    with_logo, without = render_identity_sheet(ident), render_identity_sheet(plain)
    assert set(with_logo) == {"front", "back", "left", "right"}
    for image in with_logo.values():
        assert image.shape == (128, 64, 3) and image.dtype == np.uint8
    assert not np.array_equal(with_logo["front"], without["front"])
    for view in ("back", "left", "right"):
        assert np.array_equal(with_logo[view], without[view])


def test_backpack_covers_more_of_the_back_than_of_the_front():
    ident: Identity = next(i for i in dataset_identities("tiny", 0).values() if i.bag == "backpack")
    bare = replace(ident, bag="none")
    with_bag, without = render_identity_sheet(ident), render_identity_sheet(bare)
    changed = {view: int((with_bag[view] != without[view]).any(axis=2).sum()) for view in with_bag}
    assert changed["back"] > 2 * changed["front"] > 0
    assert changed["left"] > 0 and changed["right"] > 0


# --------------------------------------------------------------------------- errors, cache, atomicity


def test_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match="valid presets: tiny, small, market"):
        generate_synthreid(tmp_path / "x", preset="huge")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        generate_synthreid(tmp_path / "x", seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        generate_synthreid(tmp_path / "x", seed=True)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        generate_synthreid(tmp_path / "x", workers=0)
    with pytest.raises(ValueError, match="valid presets"):
        ensure_synthreid("huge", root=tmp_path)
    with pytest.raises(ValueError, match="test_images_per_camera"):
        replace(MINI, test_images_per_camera=(1, 2))
    assert not (tmp_path / "x").exists()


def test_non_empty_output_needs_overwrite_and_must_be_synthreid(tmp_path):
    out = _mini(tmp_path / "out")
    with pytest.raises(FileExistsError, match=str(out)):
        generate_synthreid(out, preset=MINI)
    generate_synthreid(out, preset=MINI, seed=1, overwrite=True)
    assert read_manifest(out)["seed"] == 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a SynthReID dataset"):
        generate_synthreid(foreign, preset=MINI, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out"]  # no temporary folder left


def test_a_crash_while_rendering_leaves_no_partial_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = generate_module.render_spec

    def flaky(spec, ctx):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("renderer exploded")
        return real(spec, ctx)

    monkeypatch.setattr(generate_module, "render_spec", flaky)
    with pytest.raises(RuntimeError, match="renderer exploded"):
        generate_synthreid(tmp_path / "out", preset=MINI)
    assert calls["n"] == 10
    assert list(tmp_path.iterdir()) == []


def test_ensure_reuses_a_valid_dataset_without_touching_it(synthreid_tiny, tmp_path):
    import shutil

    target = tmp_path / "synthreid_tiny_s0"
    shutil.copytree(synthreid_tiny, target)
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*")}
    assert ensure_synthreid("tiny", seed=0, root=tmp_path) == target.absolute()
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*")} == before


def test_ensure_generates_when_missing_and_refuses_a_folder_without_manifest(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(generate_module, "generate_synthreid",
                        lambda out, spec, seed, **kw: made.append((Path(out).name, spec.name, seed)))
    assert ensure_synthreid("small", seed=4, root=tmp_path) == (tmp_path / "synthreid_small_s4").absolute()
    assert made == [("synthreid_small_s4", "small", 4)]
    stale = tmp_path / "synthreid_tiny_s0"
    (stale / "query").mkdir(parents=True)
    (stale / "query" / "0001_c1s1_000001_01.jpg").write_bytes(b"")
    with pytest.raises(FileExistsError, match="delete the folder"):
        ensure_synthreid("tiny", seed=0, root=tmp_path)
    (stale / MANIFEST).write_text(json.dumps({"format": "synthreid", "generator_version": GENERATOR_VERSION,
                                              "preset": "small", "seed": 0, "counts": {}}))
    with pytest.raises(FileExistsError, match="holds SynthReID preset 'small'"):
        ensure_synthreid("tiny", seed=0, root=tmp_path)
    assert len(made) == 1 and (stale / "query" / "0001_c1s1_000001_01.jpg").exists()


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("REIDKIT_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("REIDKIT_DATA")
    import reidkit

    checkout = Path(reidkit.__file__).resolve().parents[1] / "data"
    expected = checkout if (checkout / "README.md").is_file() else Path.home() / ".cache" / "reidkit" / "data"
    assert default_data_root() == expected


def test_ensure_regenerates_a_dataset_of_another_generator_version(synthreid_tiny, tmp_path, monkeypatch):
    import shutil

    target = tmp_path / "synthreid_tiny_s0"
    shutil.copytree(synthreid_tiny, target)
    data = json.loads((target / MANIFEST).read_text())
    data["generator_version"] = "0"
    (target / MANIFEST).write_text(json.dumps(data))
    made = []
    monkeypatch.setattr(generate_module, "generate_synthreid",
                        lambda out, spec, seed, **kw: made.append((Path(out), spec.name, seed, kw["overwrite"])))
    assert ensure_synthreid("tiny", seed=0, root=tmp_path) == target.absolute()
    assert made == [(target.absolute(), "tiny", 0, True)]
