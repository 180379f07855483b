"""The local runner with a fault-injecting entry script: retries, splitting, reuse by content, streaming."""

import csv
import os
import time
from pathlib import Path

import pytest

from scoring.items import InputItem, walk_folder
from scoring.job_settings import JobSettings
from scoring.parallel_runner import ParallelJob, ParallelJobFailed, run_parallel_job

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAULT_ENTRY = Path(__file__).with_name("fault_entry.py")


def _job(tmp_path, names, *, fail_init=False, scoring_key="k1", on_progress=None, **settings) -> ParallelJob:
    inputs = tmp_path / "inputs"
    for name in names:
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_bytes(b"x")
    inputs.mkdir(exist_ok=True)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    arguments = ["--input_root", str(inputs), "--state", str(state)] + (["--fail_init"] if fail_init else [])
    return ParallelJob(
        entry_script=FAULT_ENTRY, code_root=PROJECT_ROOT, input_root=inputs, work_dir=tmp_path / "work",
        program_arguments=tuple(arguments), settings=JobSettings(**settings), progress_interval_s=0.5,
        scoring_key=scoring_key, on_progress=on_progress,
    )


def _run(job: ParallelJob):
    return run_parallel_job(job, walk_folder(job.input_root))


def _csv(job: ParallelJob, name: str) -> list[dict]:
    with open(job.work_dir / "outputs" / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _runs(tmp_path) -> list[str]:
    log = tmp_path / "state" / "runs.log"
    return log.read_text().splitlines() if log.exists() else []


def _scored_files(tmp_path) -> list[str]:
    return sorted(name for line in _runs(tmp_path) for name in line.split(" ")[1:])


def test_scores_everything_and_calls_init_once_per_worker(tmp_path):
    job = _job(tmp_path, [f"a/{i:02d}.jpg" for i in range(10)], mini_batch_size=3, max_concurrency_per_instance=2)
    result = _run(job)
    assert (result.inputs, result.scored, result.errors) == (10, 10, 0)
    assert [row["image"] for row in _csv(job, "predictions.csv")] == [f"a/{i:02d}.jpg" for i in range(10)]
    assert len((tmp_path / "state" / "inits.log").read_text().split()) == 2
    assert len(_runs(tmp_path)) == 4


def test_error_rows_count_against_error_threshold(tmp_path):
    names = ["ok1.jpg", "bad1.jpg", "bad2.jpg", "bad3.jpg"]
    with pytest.raises(ParallelJobFailed, match=r"3 items failed .*error_threshold=2"):
        _run(_job(tmp_path, names, mini_batch_size=1, error_threshold=2))


def test_errors_within_the_threshold_are_listed_not_fatal(tmp_path):
    job = _job(tmp_path, ["ok1.jpg", "bad1.jpg", "bad2.jpg"], mini_batch_size=2, error_threshold=2)
    result = _run(job)
    assert (result.scored, result.errors) == (1, 2)
    assert {row["image"]: row["error_type"] for row in _csv(job, "errors.csv")} == {
        "bad1.jpg": "corrupt", "bad2.jpg": "corrupt"}


def test_a_raising_mini_batch_is_retried_then_listed(tmp_path):
    job = _job(tmp_path, ["a.jpg", "raise.jpg", "c.jpg"], mini_batch_size=1, max_retries=2)
    result = _run(job)
    assert (result.scored, result.errors) == (2, 1)
    error = _csv(job, "errors.csv")[0]
    assert error["error_type"] == "mini_batch_failed"
    assert "ValueError: cannot handle raise.jpg" in error["message"]
    assert sum("raise.jpg" in line for line in _runs(tmp_path)) == 3  # the first try and two retries


@pytest.mark.parametrize("culprit, reason", [("raise.jpg", "run() raised ValueError"),
                                             ("die.jpg", "worker process died (exit code 3)")])
def test_a_failing_mini_batch_is_split_until_only_the_culprit_is_an_error(tmp_path, culprit, reason):
    names = [f"{i}.jpg" for i in range(7)] + [culprit]
    job = _job(tmp_path, names, mini_batch_size=8, max_retries=1, max_concurrency_per_instance=1)
    result = _run(job)
    assert (result.inputs, result.scored, result.errors) == (8, 7, 1)
    (error,) = _csv(job, "errors.csv")
    assert (error["image"], error["error_type"]) == (culprit, "mini_batch_failed")
    assert error["message"].startswith(f"scoring this file alone failed: {reason}")
    assert sorted(row["image"] for row in _csv(job, "predictions.csv")) == sorted(names[:7])


def test_mini_batch_error_threshold_fails_the_job(tmp_path):
    job = _job(tmp_path, ["a.jpg", "raise.jpg"], mini_batch_size=1, max_retries=0, mini_batch_error_threshold=0)
    with pytest.raises(ParallelJobFailed, match="1 mini-batches failed, above mini_batch_error_threshold=0"):
        _run(job)


def test_a_killed_worker_is_replaced_and_its_mini_batch_retried(tmp_path):
    job = _job(tmp_path, ["a.jpg", "flaky.jpg", "c.jpg", "d.jpg"], mini_batch_size=1, max_retries=1)
    result = _run(job)
    assert (result.scored, result.errors) == (4, 0)
    assert len((tmp_path / "state" / "inits.log").read_text().split()) == 3  # two workers and one replacement


def test_a_mini_batch_past_its_timeout_is_stopped(tmp_path):
    job = _job(tmp_path, ["a.jpg", "hang.jpg"], mini_batch_size=1, max_retries=0, timeout=2)
    result = _run(job)
    assert (result.scored, result.errors) == (1, 1)
    assert "timeout=2s" in _csv(job, "errors.csv")[0]["message"]


def test_the_timeout_counts_run_only_not_a_fresh_workers_init(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULT_ENTRY_INIT_S", "4")  # each fresh worker loads its model for longer than the timeout
    job = _job(tmp_path, ["a.jpg", "b.jpg"], mini_batch_size=1, max_retries=0, timeout=2,
               max_concurrency_per_instance=1)
    result = _run(job)
    assert (result.scored, result.errors) == (2, 0)
    assert len((tmp_path / "state" / "inits.log").read_text().split()) == 1


def test_init_failure_fails_the_job_with_its_reason(tmp_path):
    with pytest.raises(ParallelJobFailed, match="init\\(\\) failed in a worker: RuntimeError: model folder is missing"):
        _run(_job(tmp_path, ["a.jpg"], fail_init=True))


def test_dispatch_is_dynamic_a_slow_worker_holds_no_one(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULT_ENTRY_SLOW_S", "4")  # ample time for the other worker to start, even on a busy CI
    names = ["00-slow.jpg"] + [f"{i:02d}.jpg" for i in range(1, 9)]  # sorted first: the first mini-batch
    job = _job(tmp_path, names, mini_batch_size=1, max_concurrency_per_instance=2)
    _run(job)
    by_worker = {}
    for line in _runs(tmp_path):
        pid, name = line.split(" ", 1)
        by_worker.setdefault(pid, []).append(name)
    slow_worker = next(pid for pid, files in by_worker.items() if "00-slow.jpg" in files)
    assert len(by_worker[slow_worker]) < 5  # the other worker took most of the eight fast ones


def test_a_rerun_scores_nothing_that_is_still_valid_and_ends_the_same(tmp_path):
    job = _job(tmp_path, [f"{i}.jpg" for i in range(6)] + ["bad.jpg"], mini_batch_size=2)
    _run(job)
    first = (_csv(job, "predictions.csv"), _csv(job, "errors.csv"))
    (tmp_path / "state" / "runs.log").unlink()
    result = _run(_job(tmp_path, [], mini_batch_size=4))  # another split changes nothing: rows are per item
    assert _runs(tmp_path) == []
    assert (result.inputs, result.scored, result.errors) == (7, 6, 1)
    assert (_csv(job, "predictions.csv"), _csv(job, "errors.csv")) == first


def test_a_changed_file_is_rescored_and_only_it(tmp_path):
    """The fault probe's case: broken files replaced by valid ones under the same names."""
    job = _job(tmp_path, ["a.jpg", "b.jpg", "c.jpg"], mini_batch_size=1)
    _run(job)
    (tmp_path / "state" / "runs.log").unlink()
    later = time.time() + 5
    (job.input_root / "b.jpg").write_bytes(b"new content")
    os.utime(job.input_root / "b.jpg", (later, later))
    (job.input_root / "d.jpg").write_bytes(b"x")  # and one that arrived since
    result = _run(job)
    assert _scored_files(tmp_path) == ["b.jpg", "d.jpg"]
    assert (result.inputs, result.scored) == (4, 4)


def test_another_model_month_or_profile_rescores_everything(tmp_path):
    job = _job(tmp_path, ["a.jpg", "b.jpg"], mini_batch_size=1)
    _run(job)
    (tmp_path / "state" / "runs.log").unlink()
    _run(_job(tmp_path, [], mini_batch_size=1, scoring_key="k2"))
    assert _scored_files(tmp_path) == ["a.jpg", "b.jpg"]


def test_items_that_cannot_be_read_are_accounted_for(tmp_path):
    job = _job(tmp_path, ["a.jpg"])
    items = [*walk_folder(job.input_root), InputItem.failed("../evil.jpg", "unreadable", "unsafe name")]
    result = run_parallel_job(job, items)
    assert (result.inputs, result.scored, result.errors) == (2, 1, 1)
    assert _csv(job, "errors.csv")[0]["image"] == "../evil.jpg"


def test_scoring_starts_while_items_are_still_arriving(tmp_path):
    snapshots = []
    job = _job(tmp_path, [f"{i}.jpg" for i in range(8)], mini_batch_size=2, on_progress=snapshots.append)

    def slowly():
        items = list(walk_folder(job.input_root))
        yield from items[:4]
        deadline = time.monotonic() + 60
        while not any(s["batches_done"] for s in snapshots) and time.monotonic() < deadline:
            time.sleep(0.05)  # hold the rest back until a mini-batch of the first items is done
        yield from items[4:]

    result = run_parallel_job(job, slowly())
    assert result.scored == 8
    early = [s for s in snapshots if s["batches_done"] and not s["listing_complete"]]
    assert early, "no mini-batch finished before the listing ended"
    assert snapshots[-1]["phase"] == "done" and snapshots[-1]["items_total"] == 8


def test_a_failing_listing_fails_the_job_with_its_message(tmp_path):
    job = _job(tmp_path, ["a.jpg"])

    def broken():
        yield from walk_folder(job.input_root)
        raise RuntimeError("the blob store at http://x/ did not answer for 5s")

    with pytest.raises(ParallelJobFailed, match="did not answer for 5s"):
        run_parallel_job(job, broken())


def test_the_progress_says_when_every_worker_had_finished_init(tmp_path, monkeypatch):
    """Start-up as data: the seconds until the pool's last worker was up, for the job's summary and the bench."""
    monkeypatch.setenv("FAULT_ENTRY_LATER_INIT_S", "2")  # the second worker is up 2 s after the first
    snapshots = []
    job = _job(tmp_path, [f"{i}.jpg" for i in range(8)], mini_batch_size=2, max_concurrency_per_instance=2,
               on_progress=snapshots.append)
    _run(job)
    ready = snapshots[-1]["workers_ready_s"]
    assert 2 <= ready <= snapshots[-1]["elapsed_s"]
    first_known = next(index for index, s in enumerate(snapshots) if s["workers_ready_s"] is not None)
    assert first_known > 0 and all(s["workers_ready_s"] is None for s in snapshots[:first_known])
    assert all(s["workers_ready_s"] == ready for s in snapshots[first_known:])  # set once, replacements aside


def test_a_worker_that_never_got_a_mini_batch_leaves_the_start_up_unknown(tmp_path):
    snapshots = []
    job = _job(tmp_path, ["a.jpg"], mini_batch_size=2, max_concurrency_per_instance=2, on_progress=snapshots.append)
    _run(job)
    assert snapshots[-1]["phase"] == "done" and snapshots[-1]["workers_ready_s"] is None
