"""The job's code folder is put on sys.path by the parallel runtime: no module of it may shadow another."""

import importlib.metadata
import sys
from pathlib import Path

SCORING = Path(__file__).resolve().parents[2] / "scoring"


def test_no_module_of_the_job_shares_a_name_with_the_standard_library_or_an_installed_package():
    names = {path.stem for path in SCORING.rglob("*.py") if path.stem != "__init__"}
    names |= {path.name for path in SCORING.rglob("*") if path.is_dir() and (path / "__init__.py").exists()}
    installed = set(importlib.metadata.packages_distributions())  # top-level import names of what is installed
    clashes = sorted(names & (set(sys.stdlib_module_names) | installed))
    assert clashes == [], f"scoring/ modules that would shadow another module on sys.path: {clashes}"
