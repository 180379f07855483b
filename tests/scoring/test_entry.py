"""The real entry script, run by the local runner over a small month with broken files."""

import csv
import json
from pathlib import Path

from scoring.items import walk_folder
from scoring.job_settings import JobSettings
from scoring.parallel_runner import ParallelJob, run_parallel_job
from scoring.rows import PREDICTION_COLUMNS
from support import write_small_month

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_entry_script_scores_good_images_and_lists_broken_ones(tmp_path, model_dir):
    inputs = tmp_path / "202610"
    expected = write_small_month(inputs)
    job = ParallelJob(
        entry_script=PROJECT_ROOT / "scoring" / "entry.py", code_root=PROJECT_ROOT, input_root=inputs,
        work_dir=tmp_path / "work",
        program_arguments=("--model_dir", str(model_dir), "--month", "202610", "--input_root", str(inputs),
                           *JobSettings(batch_size=4).program_arguments()),
        settings=JobSettings(mini_batch_size=4, max_concurrency_per_instance=1),
    )
    result = run_parallel_job(job, walk_folder(inputs))
    with open(job.work_dir / "outputs" / "predictions.csv", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == PREDICTION_COLUMNS
        predictions = list(reader)
    with open(job.work_dir / "outputs" / "errors.csv", encoding="utf-8") as handle:
        errors = {row["image"]: row["error_type"] for row in csv.DictReader(handle)}
    assert {row["image"] for row in predictions} == {k for k, v in expected.items() if v == "ok"}
    assert errors == {k: v for k, v in expected.items() if v != "ok"}
    assert (result.scored, result.errors) == (6, 3)
    labels = json.loads((model_dir / "metadata.json").read_text())["labels"]
    for row in predictions:
        assert row["label"] in labels and 0.0 <= float(row["score"]) <= 1.0
        assert (row["model_name"], row["model_version"], row["month"]) == ("shapes-classifier", "1", "202610")


def test_entry_script_loads_by_path_without_the_project_on_sys_path(tmp_path):
    """As Azure ML's parallel driver loads it: from its file, in another working directory."""
    import os
    import subprocess
    import sys

    probe = ("import importlib.util, sys; "
             f"spec = importlib.util.spec_from_file_location('entry', {str(PROJECT_ROOT / 'scoring' / 'entry.py')!r}); "
             "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
             "print(callable(module.init) and callable(module.run))")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"
