"""Write a file whole or not at all: a temporary file beside it, renamed over it once complete.

A reader (the publish step, a resumed run, the wait task reading a job's status) sees
the old file or the new one, never half of one; a write that fails leaves the old file
and no temporary behind. The temporary is named per process and thread, so two writers
of one file never share it. (Downloaded input items are staged in a tree of their own,
`blob_inputs`: an item's name may take all 255 bytes a path segment allows, leaving no
room for a suffix.)
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: Path | str, mode: str = "w", *, encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        with open(partial, mode, encoding=None if "b" in mode else encoding,
                  newline=None if "b" in mode else newline) as stream:
            yield stream
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise


def write_json(path: Path | str, document: dict[str, Any]) -> None:
    """`document` as indented JSON with sorted keys, whole or not at all."""
    with atomic_write(path) as stream:
        json.dump(document, stream, indent=2, sort_keys=True)
        stream.write("\n")
