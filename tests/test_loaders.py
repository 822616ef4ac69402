"""ImageDataset, train/test loaders, CUDA prefetcher and PrefetchGenerator (components.md §10–§11)."""
from __future__ import annotations

import gc
import random
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from reidkit.data import (
    CUDAPrefetcher,
    ImageDataset,
    ImageReadError,
    PrefetchGenerator,
    SampleKey,
    build_test_loaders,
    build_train_loader,
    sample_seed,
    seed_worker,
)
from reidkit.data.datasets.base import ReIDItem
from reidkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Compose, ToTensor, build_transforms

H, W = 32, 16
TRAIN_CFG = {"height": H, "width": W, "cutout_size": 8}
KEYS = {"img", "pid", "camid", "path", "index"}


def write_split(folder: Path, counts: dict[int, int], seed: int = 0) -> list[ReIDItem]:
    """Noise images named like Market-1501 (``0001_c1s1_000151_00.jpg``); ``counts`` maps pid -> images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for pid, n in counts.items():
        for k in range(n):
            cam = k % 6 + 1
            path = folder / f"{pid:04d}_c{cam}s1_{k * 25:06d}_00.jpg"
            Image.fromarray(rng.integers(0, 256, (24 + k, 12, 3), dtype=np.uint8)).save(path)
            items.append(ReIDItem(str(path), pid, cam - 1))
    return sorted(items, key=lambda item: item.path)


@pytest.fixture(scope="module")
def train_items(tmp_path_factory: pytest.TempPathFactory) -> list[ReIDItem]:
    # pid 7 has a single image: the P×K sampler draws it twice (K=2) with replacement
    return write_split(tmp_path_factory.mktemp("train"), {1: 4, 2: 3, 3: 5, 4: 2, 5: 4, 7: 1})


def batches_of(loader) -> list[dict]:
    return list(loader)


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


# ---------------------------------------------------------------------------------------- ImageDataset


def test_image_dataset_item(train_items: list[ReIDItem]) -> None:
    ds = ImageDataset(train_items, build_transforms(TRAIN_CFG, train=False))
    sample = ds[3]
    assert set(sample) == KEYS
    assert sample["img"].shape == (3, H, W) and sample["img"].dtype == torch.float32
    item = train_items[3]
    assert (sample["pid"], sample["camid"], sample["path"], sample["index"]) == (item.pid, item.camid, item.path, 3)
    assert len(ds) == len(train_items)
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


def test_image_dataset_converts_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "0001_c1s1_000001_00.png"
    Image.fromarray(np.full((8, 4), 200, dtype=np.uint8), mode="L").save(path)
    ds = ImageDataset([ReIDItem(str(path), 1, 0)], Compose([ToTensor()]))
    img = ds[0]["img"]
    assert img.shape == (3, 8, 4)
    assert torch.allclose(img, torch.full_like(img, 200 / 255))


def test_corrupt_and_missing_files_raise_naming_the_path(tmp_path: Path, train_items: list[ReIDItem]) -> None:
    corrupt = tmp_path / "0009_c2s1_000100_00.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    truncated = tmp_path / "0009_c3s1_000100_00.jpg"
    good = Path(train_items[0].path).read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    missing = tmp_path / "0009_c4s1_000100_00.jpg"
    transform = build_transforms(TRAIN_CFG, train=False)
    for path in (corrupt, truncated, missing):
        ds = ImageDataset([ReIDItem(str(path), 9, 1)], transform)
        with pytest.raises(ImageReadError, match=str(path)):
            ds[0]
    # through a loader too: the error still names the file
    query, gallery = build_test_loaders([ReIDItem(str(corrupt), 9, 1)], train_items, transform)
    with pytest.raises(ImageReadError, match=corrupt.name):
        next(iter(query))


def test_dataset_rejects_bad_arguments(train_items: list[ReIDItem]) -> None:
    with pytest.raises(TypeError, match="callable"):
        ImageDataset(train_items, transform=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ReIDItem"):
        ImageDataset([("a.jpg", 1)], Compose([ToTensor()]))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="seed"):
        ImageDataset(train_items, Compose([ToTensor()]), seed=-1)


def test_sample_is_a_function_of_seed_epoch_index_draw(train_items: list[ReIDItem]) -> None:
    ds = ImageDataset(train_items, build_transforms(TRAIN_CFG, train=True), seed=3)
    a = ds.load(2, epoch=1, draw=0)["img"]
    assert torch.equal(a, ds[SampleKey(2, 1, 0)]["img"])
    assert torch.equal(a, ImageDataset(train_items, build_transforms(TRAIN_CFG, train=True), seed=3).load(2, 1)["img"])
    others = [ds.load(2, epoch=2)["img"], ds.load(2, epoch=1, draw=1)["img"],
              ImageDataset(train_items, build_transforms(TRAIN_CFG, train=True), seed=4).load(2, 1)["img"]]
    assert all(not torch.equal(a, o) for o in others)
    assert len({sample_seed(0, e, i, d) for e in range(3) for i in range(3) for d in range(3)}) == 27


def test_foreign_transform_reproduced_without_touching_global_rng(train_items: list[ReIDItem]) -> None:
    transform = T.Compose([T.RandomResizedCrop((H, W)), T.ToTensor()])  # draws from torch's global RNG
    ds = ImageDataset(train_items, transform, seed=0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = ds.load(0, epoch=0)["img"]
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)
    assert torch.equal(a, ds.load(0, epoch=0)["img"])
    assert not torch.equal(a, ds.load(0, epoch=1)["img"])


# ------------------------------------------------------------------------------------------ train loader


def test_train_loader_batches(train_items: list[ReIDItem]) -> None:
    loader = build_train_loader(train_items, build_transforms(TRAIN_CFG, train=True), batch_size=6, num_instances=2)
    batches = batches_of(loader)
    assert len(loader) == len(batches) == len(loader.identity_sampler) >= 1
    for batch in batches:
        assert set(batch) == KEYS
        assert batch["img"].shape == (6, 3, H, W)
        assert batch["pid"].dtype == torch.int64 and batch["pid"].shape == (6,)
        assert isinstance(batch["path"], list) and len(batch["path"]) == 6
        pids = batch["pid"].tolist()
        assert all(v == 2 for v in Counter(pids).values()) and len(set(pids)) == 3
        for i, path, pid, camid in zip(batch["index"].tolist(), batch["path"], pids, batch["camid"].tolist()):
            assert train_items[i] == ReIDItem(path, pid, camid)


def test_train_loader_same_seed_same_batches_other_epoch_differs(train_items: list[ReIDItem]) -> None:
    def run(seed: int, epoch: int) -> list[dict]:
        loader = build_train_loader(
            train_items, build_transforms(TRAIN_CFG, train=True), batch_size=4, num_instances=2, seed=seed
        )
        loader.set_epoch(epoch)
        return batches_of(loader)

    torch.manual_seed(0)
    first = run(5, 0)
    torch.manual_seed(1)  # the global RNG plays no part
    assert_same_batches(first, run(5, 0))
    other_epoch = run(5, 1)
    assert any(not torch.equal(a["img"], b["img"]) for a, b in zip(first, other_epoch))
    other_seed = run(6, 0)
    assert any(not torch.equal(a["img"], b["img"]) for a, b in zip(first, other_seed))


def test_repeated_index_gets_its_own_augmentation(train_items: list[ReIDItem]) -> None:
    single = next(i for i, item in enumerate(train_items) if item.pid == 7)
    loader = build_train_loader(train_items, build_transforms(TRAIN_CFG, train=True), batch_size=4, num_instances=2)
    found = 0
    for epoch in range(6):
        loader.set_epoch(epoch)
        for batch in loader:
            where = (batch["index"] == single).nonzero().flatten().tolist()
            if where:
                assert len(where) == 2
                assert not torch.equal(batch["img"][where[0]], batch["img"][where[1]])
                found += 1
    assert found >= 1


def test_train_loader_workers_give_the_same_batches(train_items: list[ReIDItem]) -> None:
    kwargs = {"batch_size": 4, "num_instances": 2, "seed": 2}
    plain = build_train_loader(train_items, build_transforms(TRAIN_CFG, train=True), workers=0, **kwargs)
    pooled = build_train_loader(train_items, build_transforms(TRAIN_CFG, train=True), workers=2, **kwargs)
    assert pooled.persistent_workers and not plain.persistent_workers
    for epoch in (0, 1):  # the epoch reaches persistent workers through the sample keys
        plain.set_epoch(epoch)
        pooled.set_epoch(epoch)
        assert_same_batches(batches_of(plain), batches_of(pooled))
    del pooled
    gc.collect()


def test_train_loader_distributed_shares(train_items: list[ReIDItem]) -> None:
    transform = build_transforms(TRAIN_CFG, train=False)
    ranks = [
        build_train_loader(train_items, transform, batch_size=4, num_instances=2, distributed=True,
                           num_replicas=2, rank=r)
        for r in range(2)
    ]
    full = build_train_loader(train_items, transform, batch_size=4, num_instances=2)
    plan = full.identity_sampler.epoch_plan()
    assert len(ranks[0]) == len(ranks[1]) == len(plan) // 2
    for r, loader in enumerate(ranks):
        got = [b["index"].tolist() for b in loader]
        assert got == plan[r: (len(plan) // 2) * 2: 2].tolist()
    with pytest.raises(ValueError, match="distributed=True"):
        build_train_loader(train_items, transform, batch_size=4, num_instances=2, rank=0)
    with pytest.raises(RuntimeError, match="pass num_replicas"):
        build_train_loader(train_items, transform, batch_size=4, num_instances=2, distributed=True)


def test_train_loader_validates(train_items: list[ReIDItem]) -> None:
    transform = build_transforms(TRAIN_CFG, train=False)
    with pytest.raises(ValueError, match="workers"):
        build_train_loader(train_items, transform, workers=-1)
    with pytest.raises(ValueError, match="at least P"):
        build_train_loader(train_items, transform, batch_size=64, num_instances=4)


def test_seed_worker_seeds_python_and_numpy() -> None:
    torch.manual_seed(1234)
    seed_worker(0)
    a = (random.random(), np.random.rand())
    torch.manual_seed(1234)
    seed_worker(0)
    assert (random.random(), np.random.rand()) == a


# ------------------------------------------------------------------------------------------- test loaders


def test_test_loaders_sequential_keep_last_batch(tmp_path: Path, train_items: list[ReIDItem]) -> None:
    query = write_split(tmp_path / "query", {1: 2, 2: 3}, seed=1)  # 5 images
    gallery = train_items  # 19 images
    q_loader, g_loader = build_test_loaders(query, gallery, build_transforms(TRAIN_CFG, train=False), batch_size=4)
    assert (len(q_loader), len(g_loader)) == (2, 5)
    for loader, split in ((q_loader, query), (g_loader, gallery)):
        batches = batches_of(loader)
        assert [len(b["path"]) for b in batches][-1] == len(split) - 4 * (len(batches) - 1)
        assert [p for b in batches for p in b["path"]] == [item.path for item in split]
        assert torch.cat([b["index"] for b in batches]).tolist() == list(range(len(split)))
        assert all(b["img"].shape[1:] == (3, H, W) for b in batches)
        assert_same_batches(batches, batches_of(loader))
    with pytest.raises(ValueError, match="batch_size"):
        build_test_loaders(query, gallery, build_transforms(TRAIN_CFG, train=False), batch_size=0)


# ---------------------------------------------------------------------------------------- CUDA prefetcher


def small_loader(items: list[ReIDItem], batch_size: int = 4):
    return build_test_loaders(items, items, build_transforms({**TRAIN_CFG, "mean": (0, 0, 0), "std": (1, 1, 1)},
                                                             train=False), batch_size=batch_size)[0]


def test_prefetcher_on_cpu_is_a_pass_through(train_items: list[ReIDItem]) -> None:
    loader = small_loader(train_items)
    prefetcher = CUDAPrefetcher(loader, device="cpu")
    assert not prefetcher.enabled
    assert len(prefetcher) == len(loader)
    assert_same_batches(list(prefetcher), batches_of(loader))
    it = iter(prefetcher)
    for _ in range(len(loader)):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_prefetcher_normalises_and_validates(train_items: list[ReIDItem]) -> None:
    loader = small_loader(train_items)
    prefetcher = CUDAPrefetcher(loader, device="cpu", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for got, raw in zip(prefetcher, loader):
        torch.testing.assert_close(got["img"], (raw["img"] - mean) / std)
        assert got["path"] == raw["path"]
    uint8 = [torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)]
    out = next(iter(CUDAPrefetcher(uint8, device="cpu", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))))
    torch.testing.assert_close(out, torch.ones(2, 3, 4, 4))
    with pytest.raises(ValueError, match="both mean and std"):
        CUDAPrefetcher(loader, device="cpu", mean=IMAGENET_MEAN)
    with pytest.raises(KeyError, match="image"):
        next(iter(CUDAPrefetcher([{"x": torch.zeros(1, 3, 2, 2)}], device="cpu", mean=(0, 0, 0), std=(1, 1, 1))))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is missing")
def test_prefetcher_cuda_without_cuda_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        CUDAPrefetcher([], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA prefetcher needs a CUDA device")
def test_cuda_prefetcher_matches_loader_on_device(train_items: list[ReIDItem]) -> None:
    loader = small_loader(train_items)
    device = torch.device("cuda", torch.cuda.current_device())
    plain = batches_of(loader)
    prefetcher = CUDAPrefetcher(loader, device=device)
    assert prefetcher.enabled and len(prefetcher) == len(loader)
    got = []
    for batch in prefetcher:
        assert batch["img"].device == device and batch["pid"].device == device
        got.append({k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
        torch.cuda.synchronize()
    assert_same_batches(got, plain)
    normalised = CUDAPrefetcher(loader, device=device, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for batch, raw in zip(normalised, plain):
        torch.testing.assert_close(batch["img"].cpu(), (raw["img"] - mean) / std)


# ---------------------------------------------------------------------------------------- PrefetchGenerator


def test_prefetch_generator_preserves_order_and_ends() -> None:
    gen = PrefetchGenerator(range(100), max_prefetch=3)
    assert len(gen) == 100
    assert list(gen) == list(range(100))
    with pytest.raises(StopIteration):
        next(gen)
    gen.thread.join(timeout=5)
    assert not gen.thread.is_alive()


def test_prefetch_generator_wraps_a_loader(train_items: list[ReIDItem]) -> None:
    loader = small_loader(train_items)
    assert_same_batches(list(PrefetchGenerator(loader)), batches_of(loader))
    assert_same_batches(list(CUDAPrefetcher(PrefetchGenerator(loader), device="cpu")), batches_of(loader))


def _failing_source():
    yield 1
    yield 2
    raise ValueError("producer broke at item 3")


def test_prefetch_generator_reraises_producer_exception() -> None:
    gen = PrefetchGenerator(_failing_source())
    assert next(gen) == 1 and next(gen) == 2
    with pytest.raises(ValueError, match="producer broke") as info:
        next(gen)
    frames = "".join(traceback.format_tb(info.value.__traceback__))
    assert "_failing_source" in frames  # the producer's frames are kept
    assert not gen.thread.is_alive()
    with pytest.raises(StopIteration):
        next(gen)


def test_prefetch_generator_reraises_error_from_iter() -> None:
    with pytest.raises(TypeError):
        list(PrefetchGenerator(42))  # type: ignore[arg-type]


def test_prefetch_generator_is_bounded() -> None:
    produced = []

    def source():
        for i in range(1000):
            produced.append(i)
            yield i

    gen = PrefetchGenerator(source(), max_prefetch=2)
    time.sleep(0.2)
    # the queue holds 2, the producer may hold one more while it waits to put it
    assert len(produced) <= 3
    assert gen.close()


def test_prefetch_generator_early_break_stops_thread() -> None:
    gen = PrefetchGenerator(iter(range(10**9)), max_prefetch=2)
    for i, _ in enumerate(gen):
        if i == 5:
            break
    assert gen.close(timeout=5)
    assert not gen.thread.is_alive()
    with pytest.raises(StopIteration):
        next(gen)


def test_prefetch_generator_context_manager_and_drop_stop_thread() -> None:
    with PrefetchGenerator(iter(range(10**9))) as gen:
        assert next(gen) == 0
    gen.thread.join(timeout=5)
    assert not gen.thread.is_alive()

    # no explicit close: dropping the generator after a break stops the thread too
    gen = PrefetchGenerator(iter(range(10**9)))
    thread: threading.Thread = gen.thread
    for _ in gen:
        break
    del gen
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.mark.parametrize("bad", [0, 11, -1, 2.0, True, None])
def test_prefetch_generator_validates_max_prefetch(bad) -> None:
    with pytest.raises(ValueError, match="max_prefetch"):
        PrefetchGenerator(range(3), max_prefetch=bad)
