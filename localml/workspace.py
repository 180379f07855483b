"""The embedded default's Azure ML workspace: a folder with data assets, computes, models and jobs.

Layout under the workspace root:
    data/<name>/<version>.json     data asset: {"name", "version", "path", "type"}
    computes/<name>.json           compute target: {"name", "type", ...}
    models/<name>/<version>/       registered model folder (docs/contracts.md)
    jobs/<job name>/               spec.json, status.json, progress.json, job.log, outputs/
    months/<container>/<folder>/   one month's download (while a job runs) and finished rows, shared by attempts
Every JSON file is written whole (temp file + rename): a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class WorkspaceError(RuntimeError):
    """A request the workspace refuses; the message says what and why."""


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise WorkspaceError(f"invalid {kind} name {value!r}: use letters, digits, '-', '_' and '.'")
    return value


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


class LocalWorkspace:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def data_asset_file(self, name: str, version: str) -> Path:
        return self.root / "data" / check_name("data asset", name) / f"{check_name('data asset version', version)}.json"

    def compute_file(self, name: str) -> Path:
        return self.root / "computes" / f"{check_name('compute', name)}.json"

    def model_dir(self, name: str, version: str) -> Path:
        return self.root / "models" / check_name("model", name) / check_name("model version", version)

    def job_dir(self, name: str) -> Path:
        return self.root / "jobs" / check_name("job", name)

    def month_dir(self, container: str, prefix: str) -> Path:
        folder = prefix.strip("/")
        if not folder or any(part in ("", ".", "..") for part in folder.split("/")):
            raise WorkspaceError(f"invalid month folder {prefix!r} in container {container!r}")
        return self.root / "months" / check_name("container", container) / folder

    def jobs_named(self, prefix: str) -> list[str]:
        folder = self.root / "jobs"
        if not folder.is_dir():
            return []
        return sorted(path.name for path in folder.iterdir() if path.name.startswith(prefix) and path.is_dir())
