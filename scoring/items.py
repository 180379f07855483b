"""Input items: every file under the month folder, named by its path relative to that folder."""

from __future__ import annotations

import os
from pathlib import Path, PurePath


def image_id(path: str | os.PathLike, input_root: str | os.PathLike | None) -> str:
    """The image's path relative to the month folder, '/'-separated (DESIGN.md)."""
    path = PurePath(path)
    if input_root is not None:
        try:
            return path.relative_to(PurePath(input_root)).as_posix()
        except ValueError:
            pass
    return path.name


def list_input_items(input_root: Path) -> list[str]:
    """Every file under the month folder, as image ids, sorted."""
    root = Path(input_root)
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
