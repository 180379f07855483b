"""What the README shows runs as shown: its runnable command blocks, in a copy of the project, and every
command's `--help`.

A block marked `<!-- runnable -->` runs in one bash session with the blocks before it (a later block may use
what an earlier one made), in a copy of the project's tracked files beside this checkout's `.venv` and
Azurite, so it writes `.state/` and the example's folders there, never here.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
_RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)
# Every command a user may run with `--help`: the CLIs and each of their subcommands, the dev tools.
HELP_COMMANDS = [
    "scoring", "scoring score", "scoring import-model", "scoring describe-model", "scoring check-precision",
    "localml", "localml register-model", "scoring.merge",
    "devstack.demo", "devstack.airflow_ui", "devstack.example_model", "devstack.seed", "devstack.azurite",
    "devstack.postgres", "devstack.job_environment", "devstack.sample_month", "devstack.train_model",
    "bench.run", "bench.flat_memory", "bench.gpu_sweep", "bench.gpu_decode", "bench.gpu_node",
    "bench.worker_startup", "faults.run",
]


def runnable_blocks(document: Path) -> list[str]:
    return _RUNNABLE.findall(document.read_text(encoding="utf-8"))


def test_the_readme_marks_its_user_commands_runnable():
    blocks = runnable_blocks(PROJECT_ROOT / "README.md")
    assert len(blocks) >= 2 and any("import-model" in block for block in blocks)


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_every_command_prints_its_help(command):
    result = subprocess.run([sys.executable, "-m", *command.split(), "--help"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def _project_copy(destination: Path) -> Path:
    """The tracked files (as a clone has them), with this checkout's virtualenv and Azurite linked in.

    `make setup` here first, then copies keeping modification times: the copy's `make setup` then finds the
    linked installs up to date and never reinstalls this checkout's virtualenv from the copy."""
    subprocess.run(["make", "--no-print-directory", "setup"], cwd=PROJECT_ROOT, check=True, capture_output=True)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
    for name in tracked.stdout.decode().split("\0"):
        if name and (PROJECT_ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, destination / name)
    (destination / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    (destination / "tools" / "azurite" / "node_modules").symlink_to(PROJECT_ROOT / "tools" / "azurite" / "node_modules")
    return destination


@pytest.mark.e2e
@pytest.mark.parametrize("document", [d for d in DOCUMENTS if runnable_blocks(d)], ids=lambda d: d.name)
def test_the_runnable_commands_run_as_shown(document, tmp_path):
    project = _project_copy(tmp_path / "project")
    script = "set -euo pipefail\n" + "\n".join(runnable_blocks(document))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "PYTEST"))}
    result = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, f"{document.name}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    # What the blocks say they make, made in the copy.
    assert (project / "my-model" / "model.pt2").is_file()
    assert (project / "demo-output" / "202610" / "manifest.json").is_file()
    header = (project / "scored" / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("image,label,score,label_2,score_2"), header
