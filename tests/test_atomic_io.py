"""Atomic writes: the new content replaces the old in one step; a failure mid-write leaves the old file alone."""
from __future__ import annotations

from pathlib import Path

import pytest

from reidkit.atomic_io import write_atomic, write_text_atomic


def test_text_is_written_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    assert write_text_atomic(path, "one\n") == path
    write_text_atomic(path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    write_atomic(path, lambda handle: handle.write(b"old"), binary=True)

    def half_then_crash(handle) -> None:  # type: ignore[no-untyped-def]
        handle.write(b"new but incomp")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, half_then_crash, binary=True)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
