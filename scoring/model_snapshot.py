"""One model per result: the job reads the model once, into a folder of its own, and every worker loads that.

A model in the registry can be replaced while a month is being scored (a new
upload of the same version, a `cp` over the file). The job copies the model
file once, hashing the very bytes it copies, with its metadata written beside
it; workers load the copy, and every row carries the sha256 of the bytes its
worker loaded. A restarted worker therefore loads what the others loaded, and a
row scored by anything else is not accepted (`scoring.parallel_runner`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

from scoring.model_format import locate
from scoring.model_metadata import write_metadata

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class ModelSnapshot:
    path: Path  # the job's own model folder: the model file and its metadata.json
    digest: str  # sha256 of the model file's bytes
    metadata: dict  # the metadata as the workers read it (labels, preprocessing, agreement record)


def snapshot_model(source: Path, destination: Path) -> ModelSnapshot:
    """Copy the model at `source` (file or folder) into `destination`, replacing what was there."""
    found = locate(Path(source))
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    target = destination / found.path.name
    digest = hashlib.sha256()
    with open(found.path, "rb") as reader, open(target, "wb") as writer:
        for chunk in iter(lambda: reader.read(_CHUNK), b""):
            digest.update(chunk)
            writer.write(chunk)
    metadata = dataclasses.replace(found.metadata, file=target.name)
    write_metadata(destination, metadata)
    return ModelSnapshot(destination, digest.hexdigest(), json.loads((destination / "metadata.json").read_text()))
