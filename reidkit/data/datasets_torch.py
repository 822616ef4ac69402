"""``ImageDataset``: ReIDItem lists as a torch ``Dataset`` with reproducible per-sample augmentation.

Randomness design (one choice, used everywhere)
-----------------------------------------------
Every sample's augmentation is drawn from its **own** ``torch.Generator`` seeded by
``sample_seed(seed, epoch, index, draw)``:

* ``seed`` is the dataset's base seed, ``epoch`` the training epoch, ``index`` the dataset index;
* ``draw`` counts repeats of the same index inside one batch -- the P×K sampler draws a pid with fewer than
  K images with replacement, and without ``draw`` the repeated copies would be augmented identically
  (zero-distance positives for the triplet loss).

The output therefore depends only on those four numbers: not on the number of workers, on which worker
loads the sample, or on what was loaded before. A preview widget or a test reproduces any training sample
with :meth:`ImageDataset.load` ``(index, epoch, draw)``.

The training loader (:func:`reidkit.data.loaders.build_train_loader`) hands the dataset
:class:`SampleKey` ``(index, epoch, draw)`` keys built in the main process, so the epoch reaches workers
even when they are persistent (a persistent worker keeps its own copy of the dataset, so
:meth:`ImageDataset.set_epoch` in the main process would not reach it). A plain integer index uses
``self.epoch`` (set with :meth:`~ImageDataset.set_epoch`) and ``draw = 0``.

reidkit transforms (:class:`~reidkit.data.transforms.Transform`, :class:`~reidkit.data.transforms.Compose`)
draw only from the generator they are given. A foreign callable (e.g. a torchvision transform) draws from
torch's global CPU RNG, so it runs under ``torch.random.fork_rng`` with that RNG seeded by the same sample
seed (CPU only: the CUDA RNG is neither read nor changed). Transforms that use Python's ``random`` or NumPy's
global RNG are *not* reproduced per sample; they are only seeded per worker by the loader's
``worker_init_fn``.
"""
from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from reidkit.data.datasets.base import ReIDItem
from reidkit.data.transforms.base import Compose, Transform


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image; the message names the path."""


class SampleKey(NamedTuple):
    """What a training batch sampler hands the dataset: the index plus what seeds its augmentation."""

    index: int
    epoch: int
    draw: int = 0


def sample_seed(seed: int, epoch: int, index: int, draw: int = 0) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, index, draw)`` (NumPy ``SeedSequence`` mixing).

    Hashing (rather than e.g. ``seed + index``) keeps neighbouring samples and epochs uncorrelated.
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("index", index), ("draw", draw)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"sample_seed: {name} must be a non-negative integer, got {value!r}")
    state = np.random.SeedSequence([int(seed), int(epoch), int(index), int(draw)]).generate_state(2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & (2**63 - 1)


def read_image(path: str) -> Image.Image:
    """Open ``path`` and return it as an RGB PIL image (fully decoded, file closed).

    Raises :class:`ImageReadError` naming the path when the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() decodes the whole file here, inside the error handling
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: image file not found") from err
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err


def _uses_global_rng(transform: Callable[..., Any]) -> bool:
    """Whether some step of ``transform`` is not a reidkit Transform (and may draw from torch's global RNG)."""
    if isinstance(transform, Compose):
        return any(_uses_global_rng(step) for step in transform.transforms)
    return not isinstance(transform, Transform)


def _is_random(transform: Callable[..., Any]) -> bool:
    """reidkit transforms say whether they are random; a foreign callable is assumed to be."""
    return bool(getattr(transform, "random", True))


class ImageDataset(Dataset):
    """Images of a re-ID split as dicts ``{"img", "pid", "camid", "path", "index"}``.

    ``img`` is ``transform(PIL RGB image)`` (a tensor for the pipelines of ``build_transforms``), ``pid`` and
    ``camid`` are ints, ``path`` the file, ``index`` the position in ``items``. The default collate turns a
    batch into ``img (B, 3, H, W)``, ``pid``/``camid``/``index`` int64 tensors and ``path`` a list of str.

    Args:
        items: the split (:class:`~reidkit.data.datasets.base.ReIDItem` or ``(path, pid, camid)`` triples).
        transform: called as ``transform(img, generator=g)`` for reidkit transforms, ``transform(img)`` else.
        seed: base seed of the per-sample generators (see the module docstring).

    Indexing accepts an ``int`` (uses :attr:`epoch` and ``draw=0``) or a :class:`SampleKey`.
    """

    def __init__(self, items: Sequence[ReIDItem], transform: Callable[..., Any], seed: int = 0) -> None:
        if not callable(transform):
            raise TypeError(f"transform must be callable (e.g. build_transforms(cfg, train)), got {transform!r}")
        checked: list[ReIDItem] = []
        for position, item in enumerate(items):
            if not (isinstance(item, tuple) and len(item) == 3):
                raise TypeError(f"items[{position}] must be a ReIDItem(path, pid, camid), got {item!r}")
            path, pid, camid = item
            checked.append(ReIDItem(str(path), int(pid), int(camid)))
        self.items: list[ReIDItem] = checked
        self.transform = transform
        sample_seed(seed, 0, 0)  # validates the seed
        self.seed = int(seed)
        self.epoch = 0
        self._random = _is_random(transform)
        self._global_rng = _uses_global_rng(transform)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (``SampleKey`` carries its own)."""
        sample_seed(self.seed, epoch, 0)  # validates the epoch
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def _transform(self, img: Image.Image, seed: int) -> Any:
        if not self._random:
            return self.transform(img, generator=None) if isinstance(self.transform, Transform) else self.transform(img)
        generator = torch.Generator().manual_seed(seed)
        if not self._global_rng:
            return self.transform(img, generator=generator)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU RNG only; fork_rng restores it afterwards
            if isinstance(self.transform, Transform):
                return self.transform(img, generator=generator)
            return self.transform(img)

    def load(self, index: int, epoch: int | None = None, draw: int = 0) -> dict[str, Any]:
        """The sample ``index`` exactly as the training loader produces it in ``epoch`` (default :attr:`epoch`)."""
        n = len(self.items)
        index = operator.index(index)
        if not 0 <= index < n:
            raise IndexError(f"ImageDataset index {index} out of range for {n} images")
        epoch = self.epoch if epoch is None else epoch
        item = self.items[index]
        img = self._transform(read_image(item.path), sample_seed(self.seed, epoch, index, draw))
        return {"img": img, "pid": item.pid, "camid": item.camid, "path": item.path, "index": index}

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        if isinstance(key, SampleKey):
            return self.load(key.index, key.epoch, key.draw)
        return self.load(key)

    def __repr__(self) -> str:
        return f"ImageDataset({len(self.items)} images, seed={self.seed}, transform={self.transform!r})"


class KeyedBatchSampler(Sampler[list[SampleKey]]):
    """Wrap a batch sampler of indices (with ``epoch`` and ``set_epoch``) to yield :class:`SampleKey` batches.

    Each index becomes ``SampleKey(index, epoch, draw)`` where ``draw`` numbers the repeats of that index
    within the batch (0, 1, ...). ``len`` and ``set_epoch`` are those of the wrapped sampler.
    """

    def __init__(self, batch_sampler: Sampler[list[int]]) -> None:
        super().__init__()
        for attr in ("set_epoch", "epoch", "__len__"):
            if not hasattr(batch_sampler, attr):
                raise TypeError(f"KeyedBatchSampler needs a batch sampler with {attr!r}, got {batch_sampler!r}")
        self.batch_sampler = batch_sampler

    @property
    def epoch(self) -> int:
        return int(self.batch_sampler.epoch)  # type: ignore[attr-defined]

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        epoch = self.epoch
        for batch in self.batch_sampler:
            seen: Counter[int] = Counter()
            keys = []
            for index in batch:
                keys.append(SampleKey(int(index), epoch, seen[index]))
                seen[index] += 1
            yield keys

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"KeyedBatchSampler({self.batch_sampler!r})"
