"""A file is written whole or not at all."""

import pytest

from scoring.atomic_write import atomic_write


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "predictions.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_the_new_file_replaces_the_old_only_once_complete(tmp_path):
    target = tmp_path / "sub" / "status.json"
    with atomic_write(target) as handle:
        handle.write("{}")
        assert not target.exists()  # readers still see nothing (or the old file) until the rename
    assert target.read_text() == "{}" and sorted(p.name for p in target.parent.iterdir()) == ["status.json"]
    with atomic_write(target, "wb") as handle:
        handle.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
