import csv
from pathlib import Path

import pytest

from scoring.job_settings import JobSettings
from scoring.parallel_runner import ParallelJob, ParallelJobFailed, plan_mini_batches, run_parallel_job

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAULT_ENTRY = Path(__file__).with_name("fault_entry.py")


def _job(tmp_path, names, *, fail_init=False, **settings) -> ParallelJob:
    inputs = tmp_path / "inputs"
    for name in names:
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_bytes(b"x")
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    arguments = ["--input_root", str(inputs), "--state", str(state)] + (["--fail_init"] if fail_init else [])
    return ParallelJob(
        entry_script=FAULT_ENTRY, code_root=PROJECT_ROOT, input_root=inputs, work_dir=tmp_path / "work",
        program_arguments=tuple(arguments), settings=JobSettings(**settings), progress_interval_s=0.5,
    )


def _csv(job: ParallelJob, name: str) -> list[dict]:
    with open(job.work_dir / "outputs" / name, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _runs(tmp_path) -> list[str]:
    return (tmp_path / "state" / "runs.log").read_text().splitlines()


def test_plan_is_deterministic_and_covers_every_item():
    batches = plan_mini_batches([f"{i}.jpg" for i in range(7)], 3)
    assert [b.batch_id for b in batches] == ["mb-000000", "mb-000001", "mb-000002"]
    assert [len(b.files) for b in batches] == [3, 3, 1]


def test_scores_everything_and_calls_init_once_per_worker(tmp_path):
    job = _job(tmp_path, [f"a/{i:02d}.jpg" for i in range(10)], mini_batch_size=3, max_concurrency_per_instance=2)
    result = run_parallel_job(job)
    assert (result.inputs, result.scored, result.errors) == (10, 10, 0)
    assert [row["image"] for row in _csv(job, "predictions.csv")] == [f"a/{i:02d}.jpg" for i in range(10)]
    assert len((tmp_path / "state" / "inits.log").read_text().split()) == 2
    assert len(_runs(tmp_path)) == 4


def test_error_rows_count_against_error_threshold(tmp_path):
    names = ["ok1.jpg", "bad1.jpg", "bad2.jpg", "bad3.jpg"]
    with pytest.raises(ParallelJobFailed, match=r"3 items failed .*error_threshold=2"):
        run_parallel_job(_job(tmp_path, names, mini_batch_size=1, error_threshold=2))


def test_errors_within_the_threshold_are_listed_not_fatal(tmp_path):
    job = _job(tmp_path, ["ok1.jpg", "bad1.jpg", "bad2.jpg"], mini_batch_size=2, error_threshold=2)
    result = run_parallel_job(job)
    assert (result.scored, result.errors) == (1, 2)
    assert {row["image"]: row["error_type"] for row in _csv(job, "errors.csv")} == {
        "bad1.jpg": "corrupt", "bad2.jpg": "corrupt"}


def test_a_raising_mini_batch_is_retried_then_listed(tmp_path):
    job = _job(tmp_path, ["a.jpg", "raise.jpg", "c.jpg"], mini_batch_size=1, max_retries=2)
    result = run_parallel_job(job)
    assert (result.scored, result.errors) == (2, 1)
    error = _csv(job, "errors.csv")[0]
    assert error["error_type"] == "mini_batch_failed"
    assert "ValueError: cannot handle raise.jpg" in error["message"]
    assert sum("raise.jpg" in line for line in _runs(tmp_path)) == 3  # the first try and two retries


def test_mini_batch_error_threshold_fails_the_job(tmp_path):
    job = _job(tmp_path, ["a.jpg", "raise.jpg"], mini_batch_size=1, max_retries=0, mini_batch_error_threshold=0)
    with pytest.raises(ParallelJobFailed, match="1 mini-batches failed, above mini_batch_error_threshold=0"):
        run_parallel_job(job)


def test_a_killed_worker_is_replaced_and_its_mini_batch_retried(tmp_path):
    job = _job(tmp_path, ["a.jpg", "flaky.jpg", "c.jpg", "d.jpg"], mini_batch_size=1, max_retries=1)
    result = run_parallel_job(job)
    assert (result.scored, result.errors) == (4, 0)
    assert len((tmp_path / "state" / "inits.log").read_text().split()) == 3  # two workers and one replacement


def test_a_worker_that_always_dies_fails_only_its_mini_batch(tmp_path):
    job = _job(tmp_path, ["a.jpg", "die.jpg"], mini_batch_size=1, max_retries=1)
    result = run_parallel_job(job)
    assert (result.scored, result.errors) == (1, 1)
    assert "worker process died (exit code 3)" in _csv(job, "errors.csv")[0]["message"]


def test_a_mini_batch_past_its_timeout_is_stopped(tmp_path):
    job = _job(tmp_path, ["a.jpg", "hang.jpg"], mini_batch_size=1, max_retries=0, timeout=2)
    result = run_parallel_job(job)
    assert (result.scored, result.errors) == (1, 1)
    assert "timeout=2s" in _csv(job, "errors.csv")[0]["message"]


def test_init_failure_fails_the_job_with_its_reason(tmp_path):
    with pytest.raises(ParallelJobFailed, match="init\\(\\) failed in a worker: RuntimeError: model folder is missing"):
        run_parallel_job(_job(tmp_path, ["a.jpg"], fail_init=True))


def test_dispatch_is_dynamic_a_slow_worker_holds_no_one(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULT_ENTRY_SLOW_S", "4")  # ample time for the other worker to start, even on a busy CI
    names = ["00-slow.jpg"] + [f"{i:02d}.jpg" for i in range(1, 9)]  # sorted first: the first mini-batch
    job = _job(tmp_path, names, mini_batch_size=1, max_concurrency_per_instance=2)
    run_parallel_job(job)
    by_worker = {}
    for line in _runs(tmp_path):
        pid, name = line.split(" ", 1)
        by_worker.setdefault(pid, []).append(name)
    slow_worker = next(pid for pid, files in by_worker.items() if "00-slow.jpg" in files)
    assert len(by_worker[slow_worker]) < 5  # the other worker took most of the eight fast ones


def test_a_restarted_job_skips_finished_mini_batches_and_ends_the_same(tmp_path):
    job = _job(tmp_path, [f"{i}.jpg" for i in range(6)] + ["bad.jpg"], mini_batch_size=2)
    run_parallel_job(job)
    first = (_csv(job, "predictions.csv"), _csv(job, "errors.csv"))
    (job.work_dir / "rows" / "mb-000001.jsonl").unlink()  # as if the job died while scoring it
    (tmp_path / "state" / "runs.log").unlink()
    run_parallel_job(job)
    assert _runs(tmp_path) == [line for line in _runs(tmp_path) if "2.jpg 3.jpg" in line]
    assert len(_runs(tmp_path)) == 1
    assert (_csv(job, "predictions.csv"), _csv(job, "errors.csv")) == first


def test_known_failures_are_accounted_for(tmp_path):
    job = _job(tmp_path, ["a.jpg"])
    job = ParallelJob(**{**job.__dict__, "known_failures": {"../evil.jpg": ("unreadable", "unsafe name")}})
    result = run_parallel_job(job)
    assert (result.inputs, result.scored, result.errors) == (2, 1, 1)
    assert _csv(job, "errors.csv")[0]["image"] == "../evil.jpg"


def test_a_restart_with_another_split_starts_over_instead_of_mixing(tmp_path):
    names = [f"{i}.jpg" for i in range(6)]
    run_parallel_job(_job(tmp_path, names, mini_batch_size=2))
    (tmp_path / "state" / "runs.log").unlink()
    job = _job(tmp_path, names, mini_batch_size=4)
    result = run_parallel_job(job)
    assert (result.scored, result.errors) == (6, 0)
    assert len(_runs(tmp_path)) == 2  # both new mini-batches scored again
