"""The embedded default's model registry: `<workspace>/models/<name>/<version>/`, one folder per version.

`register_model` copies a model (a `.pt2` or TorchScript file, or a folder the
job accepts) into the registry after loading it as the job would, so that a
pickled model or a broken one is refused at registration, in one line, not at
the first mini-batch. Versions are immutable, as on Azure ML.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from localml.workspace import LocalWorkspace, WorkspaceError
from scoring.model_format import ModelFile, locate
from scoring.model_metadata import ModelFolderError, write_metadata


def register_model(workspace: LocalWorkspace, source: Path, name: str, version: str) -> Path:
    """Copy the model at `source` into the registry as `name:version`; returns its folder."""
    from scoring.model import load_model

    folder = workspace.model_dir(name, version)
    if folder.exists():
        raise WorkspaceError(f"model {name}:{version} is already registered at {folder}; versions are immutable, "
                             "register a new version")
    found = locate(Path(source))
    load_model(Path(source))  # refuses what the job would refuse, before anything is registered
    staging = folder.with_name(f".{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(found.path, staging / found.path.name)
    write_metadata(staging, dataclasses.replace(found.metadata, name=name, version=version, file=found.path.name))
    staging.rename(folder)  # registered whole or not at all
    return folder


def registered_model(workspace: LocalWorkspace, name: str, version: str) -> ModelFile:
    """The registered model `name:version`, located and checked (no torch); one line when missing or refused."""
    folder = workspace.model_dir(name, version)
    if not folder.is_dir():
        versions = sorted(path.name for path in folder.parent.iterdir()) if folder.parent.is_dir() else []
        known = f"; registered versions: {', '.join(versions)}" if versions else f"; no model {name!r} is registered"
        raise ModelFolderError(f"model {name}:{version} is not registered in {workspace.root / 'models'}{known}")
    return locate(folder)
