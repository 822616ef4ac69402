"""Overlap data movement with compute (components.md §11).

* :class:`CUDAPrefetcher` -- keeps the *next* batch's host→device copy in flight on a side CUDA stream while
  the model works on the current one (the pattern of NVIDIA Apex's ImageNet example). Correct use of a side
  stream needs two things: the compute stream waits for the copy stream before touching the batch
  (``wait_stream``), and every copied tensor is marked as used by the compute stream (``record_stream``) so
  the caching allocator does not hand its memory to the copy of a later batch while kernels still read it.
  The seed and FastReID skip ``record_stream``. Without CUDA it is a pass-through with the same interface.
* :class:`PrefetchGenerator` -- runs any iterator in a background daemon thread that fills a bounded queue,
  so Python-side work of the producer (e.g. collating, host preprocessing) overlaps the consumer. CPU only.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import torch

from reidkit.data.transforms.base import check_triple

T = TypeVar("T")


# ------------------------------------------------------------------------------------------- helpers


def _map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], obj: Any) -> Any:
    """Apply ``fn`` to every tensor in a nest of mappings (returned as dicts), lists and tuples; other values
    are returned as they are."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: _map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
        return type(obj)(*(_map_tensors(fn, v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(fn, v) for v in obj)
    return obj


def _visit_tensors(fn: Callable[[torch.Tensor], None], obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        fn(obj)
    elif isinstance(obj, Mapping):
        for v in obj.values():
            _visit_tensors(fn, v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _visit_tensors(fn, v)


def _resolve_device(device: torch.device | str | int | None) -> torch.device:
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"CUDAPrefetcher: device {dev} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"CUDAPrefetcher supports cuda and cpu devices, got {dev}")
    return dev


# ------------------------------------------------------------------------------------ CUDA prefetcher


class CUDAPrefetcher:
    """Iterate ``loader`` with the next batch already on ``device`` (components.md §11).

    On CUDA, iteration keeps one batch ahead: batch *n + 1* is pinned (if the loader did not pin it) and
    copied with ``non_blocking=True`` on a side stream (and optionally normalised there) while the caller
    computes on batch *n*. Before a batch is returned the current stream waits for the side stream and every
    tensor of the batch calls ``record_stream(current)``.

    On CPU (``device="cpu"``, or ``None`` without CUDA) it is a pass-through with the same interface.
    Either way ``len(prefetcher) == len(loader)``, non-tensor values (paths) pass through unchanged, the end
    of the loader ends the iteration (``StopIteration``) and errors of the loader propagate.

    Args:
        loader: any iterable of batches (tensors, or dicts/lists/tuples holding tensors).
        device: target device; default the current CUDA device if available, else CPU.
        mean, std: optional per-channel statistics: the image (``batch["img"]`` of a dict batch, or a tensor
            batch itself) becomes ``(x − mean) / std`` on the device (uint8 images are first scaled to [0, 1]).
            Both or neither. Applied on CPU too, so results do not depend on the device.
        key: the dict key of the image tensor to normalise.
    """

    def __init__(
        self,
        loader: Iterable[Any],
        device: torch.device | str | int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        key: str = "img",
    ) -> None:
        self.loader = loader
        self.device = _resolve_device(device)
        self.enabled = self.device.type == "cuda"
        if (mean is None) != (std is None):
            raise ValueError("CUDAPrefetcher: give both mean and std for normalisation, or neither")
        self.key = key
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        if mean is not None and std is not None:
            m = check_triple("mean", mean)
            s = check_triple("std", std, positive=True)
            self._mean = torch.tensor(m, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
            self._std = torch.tensor(s, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------- normalisation

    def _normalise_image(self, x: torch.Tensor) -> torch.Tensor:
        assert self._mean is not None and self._std is not None
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif not x.is_floating_point():
            raise TypeError(f"CUDAPrefetcher can only normalise float or uint8 images, got {x.dtype}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"CUDAPrefetcher normalises (B, 3, H, W) image batches, got shape {tuple(x.shape)}")
        return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)

    def _normalise(self, batch: Any) -> Any:
        if self._mean is None:
            return batch
        if isinstance(batch, torch.Tensor):
            return self._normalise_image(batch)
        if isinstance(batch, Mapping):
            if self.key not in batch:
                raise KeyError(f"CUDAPrefetcher: batch has no image key {self.key!r} to normalise "
                               f"(keys: {sorted(map(str, batch))})")
            out = dict(batch)
            out[self.key] = self._normalise_image(batch[self.key])
            return out
        raise TypeError(
            f"CUDAPrefetcher: normalisation needs a tensor or dict batch, got {type(batch).__name__}; "
            "normalise in the transform instead"
        )

    # -------------------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[Any]:
        if not self.enabled:
            for batch in self.loader:
                yield self._normalise(batch)
            return
        yield from self._iter_cuda()

    def _iter_cuda(self) -> Iterator[Any]:
        device = self.device
        side = torch.cuda.Stream(device=device)
        current = torch.cuda.current_stream(device)
        side.wait_stream(current)  # orders the side stream after e.g. the creation of mean/std
        source = iter(self.loader)
        end = object()

        def preload() -> Any:
            try:
                host = next(source)
            except StopIteration:
                return end
            with torch.cuda.stream(side):
                def copy(t: torch.Tensor) -> torch.Tensor:
                    if t.device.type == "cpu" and not t.is_pinned():
                        t = t.pin_memory()
                    return t.to(device, non_blocking=True)

                return self._normalise(_map_tensors(copy, host))

        pending = preload()
        while pending is not end:
            current = torch.cuda.current_stream(device)
            current.wait_stream(side)
            batch = pending
            _visit_tensors(lambda t: t.record_stream(current) if t.device.type == "cuda" else None, batch)
            pending = preload()
            yield batch

    def __repr__(self) -> str:
        return f"CUDAPrefetcher(device={self.device}, normalise={self._mean is not None}, loader={self.loader!r})"


# ------------------------------------------------------------------------------- prefetch generator

_ITEM, _ERROR, _END = "item", "error", "end"
_POLL_S = 0.05


def _produce(iterable: Iterable[Any], out: queue.Queue, stop: threading.Event) -> None:
    """Thread body: push ``(_ITEM, x)`` for every item, then ``(_END, None)`` or ``(_ERROR, exception)``.

    Holds no reference to the :class:`PrefetchGenerator`, so dropping the generator lets it be collected
    (its ``__del__`` then stops this thread). Every put polls ``stop`` so a closed consumer never leaves the
    thread blocked on a full queue.
    """

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(message, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in iterable:
            if not put((_ITEM, item)):
                return
    except BaseException as err:  # noqa: BLE001 - forwarded to the consumer, who re-raises it; never swallowed
        put((_ERROR, err))
        return
    put((_END, None))


class PrefetchGenerator(Generic[T]):
    """Iterate ``iterable`` in a background daemon thread, up to ``max_prefetch`` items ahead.

    Items come out in order. An exception raised by the producer (including by ``iter(iterable)``) is
    re-raised in the consumer as the *original* exception object, whose traceback still contains the
    producer's frames. The end of the stream is a sentinel in the queue, after which ``next`` raises
    ``StopIteration``. Nothing here touches CUDA.

    Stopping early: :meth:`close` (also called by ``with PrefetchGenerator(...) as g:`` on exit, and by
    ``__del__`` when the generator is dropped, e.g. after ``for x in PrefetchGenerator(it): break``) sets a
    stop flag, empties the queue and joins the thread. A producer blocked inside ``next`` of a slow source
    exits at its next hand-over; :meth:`close` waits for that up to ``timeout`` seconds and returns whether
    the thread has ended.

    Args:
        iterable: the source (a ``DataLoader``, a generator, ...).
        max_prefetch: queue capacity, an integer in 1..10.
    """

    def __init__(self, iterable: Iterable[T], max_prefetch: int = 2) -> None:
        if isinstance(max_prefetch, bool) or not isinstance(max_prefetch, int) or not 1 <= max_prefetch <= 10:
            raise ValueError(f"max_prefetch must be an integer in 1..10, got {max_prefetch!r}")
        self.iterable = iterable
        self.max_prefetch = max_prefetch
        self._queue: queue.Queue = queue.Queue(maxsize=max_prefetch)
        self._stop = threading.Event()
        self._done = False
        self.thread = threading.Thread(
            target=_produce, args=(iterable, self._queue, self._stop), name="reidkit-prefetch", daemon=True
        )
        self.thread.start()

    def __iter__(self) -> PrefetchGenerator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        kind, payload = self._queue.get()
        if kind == _ITEM:
            return payload
        self._done = True
        self.thread.join()
        if kind == _ERROR:
            raise payload
        raise StopIteration

    def __len__(self) -> int:
        try:
            return len(self.iterable)  # type: ignore[arg-type]
        except TypeError as err:
            raise TypeError(f"PrefetchGenerator: the wrapped {type(self.iterable).__name__} has no len()") from err

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the producer thread and wait up to ``timeout`` s; return ``True`` if it has ended."""
        self._done = True
        self._stop.set()
        while True:  # free the slots so a producer blocked in put() sees the flag at once
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def __enter__(self) -> PrefetchGenerator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # attributes may be missing if __init__ failed (e.g. bad max_prefetch)
        if getattr(self, "thread", None) is not None:
            self._stop.set()

    def __repr__(self) -> str:
        state = "alive" if self.thread.is_alive() else "stopped"
        return f"PrefetchGenerator(max_prefetch={self.max_prefetch}, thread {state}, iterable={self.iterable!r})"
