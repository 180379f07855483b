"""`make faults` runs in `make test` too: every case of the fault suite must pass (0 missing, 0 duplicated, 0 collateral)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from faults.cases import CASES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_every_fault_case_passes():
    result = subprocess.run([sys.executable, "-m", "faults.run"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=900)
    table = result.stdout[result.stdout.index("case "):] if "case " in result.stdout else result.stdout[-3000:]
    assert result.returncode == 0, table + result.stderr[-3000:]
    assert f"{len(CASES)} passed, 0 failed" in result.stdout, table
