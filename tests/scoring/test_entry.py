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


def test_run_places_paths_of_another_mount_by_the_month_folder_and_gives_a_stray_path_no_row(tmp_path, model_dir):
    """As on Azure ML when the mount is spelled unlike --input_root: items are placed by the month's folder, one
    sample path is logged, and a path placed nowhere costs its own row (the merge lists it), not the mini-batch."""
    import subprocess
    import sys

    from support import image_bytes

    mounted = tmp_path / "mnt" / "INPUT_images" / "202610"
    (mounted / "circle").mkdir(parents=True)
    (mounted / "circle" / "a.png").write_bytes(image_bytes("PNG"))
    (mounted / "b.png").write_bytes(image_bytes("PNG"))
    stray = tmp_path / "elsewhere" / "c.png"
    stray.parent.mkdir()
    stray.write_bytes(image_bytes("PNG"))
    script = (
        "import importlib.util, json, logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        f"sys.argv = ['entry.py', '--model_dir', {str(model_dir)!r}, '--month', '202610',"
        f" '--input_root', {str(tmp_path / 'not' / 'the' / 'mount' / '202610')!r}]\n"
        f"spec = importlib.util.spec_from_file_location('entry', {str(PROJECT_ROOT / 'scoring' / 'entry.py')!r})\n"
        "entry = importlib.util.module_from_spec(spec); spec.loader.exec_module(entry)\n"
        "entry.init()\n"
        f"print(json.dumps(entry.run([{str(mounted / 'circle' / 'a.png')!r}, {str(stray)!r},"
        f" {str(mounted / 'b.png')!r}])))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(json.loads(row)["image"] for row in rows) == ["b.png", "circle/a.png"]
    assert f"mini-batch item {str(stray)!r} is not under the input root" in result.stderr
    assert result.stderr.count("mini-batch paths look like") == 1 and "item 'circle/a.png'" in result.stderr
