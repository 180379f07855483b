"""One status check at a time: what a wait does with it (shared by the trigger and the non-deferred wait)."""

from types import SimpleNamespace

import pytest

from batch_scoring.job_watch import CANCEL_AND_WAIT, CANCEL_REQUEST, JobWatch, StateClock, job_summary, next_poll_s


def _info(status, terminal=False, **details):
    return SimpleNamespace(name="job-1", status=status, terminal=terminal, url="http://studio/job-1", error=None,
                           details=details, tags={})


def test_a_finished_job_ends_the_wait_with_its_event_and_nothing_is_cancelled():
    watch = JobWatch("job-1", end_time=1000.0, poll_interval=30, started=0.0)
    verdict = watch.after(_info("Completed", terminal=True), now=10.0, monotonic=10.0)
    assert verdict.event["status"] == "success" and verdict.cancel is None


def test_a_finished_job_s_summary_names_its_workers_start_up_where_its_progress_records_it():
    finished = {"started_at": 100.0, "finished_at": 110.0, "counts": {"inputs": 305, "scored": 300, "errors": 5}}
    progress = {"phase": "done", "workers_ready_s": 3.24, "profile": "scoring profile cpu, bf16"}
    assert job_summary(_info("Completed", terminal=True, **finished, progress=progress)) == (
        "305 images, 300 scored, 5 errors; in 10.0s (30.5 img/s); workers ready after 3.2s; scoring profile cpu, bf16")
    unknown = {**progress, "workers_ready_s": None}  # a worker never got a mini-batch to report on
    assert "workers ready" not in job_summary(_info("Completed", terminal=True, **finished, progress=unknown))


def test_the_deadline_cancels_and_waits_and_a_stall_only_asks():
    watch = JobWatch("job-1", end_time=100.0, poll_interval=30, started=0.0, stalled_timeout_s=50)
    late = watch.after(_info("Running"), now=100.0, monotonic=100.0)
    assert late.cancel == CANCEL_AND_WAIT and late.event["message"].endswith("at the wait's deadline; it was cancelled")
    watch = JobWatch("job-1", end_time=1000.0, poll_interval=30, started=0.0, stalled_timeout_s=50)
    assert watch.after(_info("Paused"), now=10.0, monotonic=10.0).event is None  # the clock starts
    stalled = watch.after(_info("Paused"), now=60.0, monotonic=60.0)
    assert stalled.cancel == CANCEL_REQUEST and "(limit 50s); it was cancelled" in stalled.event["message"]


def test_a_live_job_gets_its_progress_line_and_a_pause_cut_at_the_deadline():
    watch = JobWatch("job-1", end_time=105.0, poll_interval=30, started=0.0)
    verdict = watch.after(_info("Running", progress={"phase": "scoring"}), now=100.0, monotonic=1000.0)
    assert verdict.event is None and verdict.cancel is None
    assert verdict.line == "job job-1 is Running (scoring); next check in 30s" and verdict.pause_s == 5.0


def test_the_state_clock_restarts_when_the_state_changes():
    clock = StateClock()
    assert clock.seconds_in("Queued", 100.0) == 0.0
    assert clock.seconds_in("Queued", 160.0) == 60.0
    assert clock.seconds_in("Running", 170.0) == 0.0
    assert clock.seconds_in("Running", 171.5) == 1.5


@pytest.mark.parametrize("poll_interval, watched_s, pause", [
    (30, 0, 2), (30, 12, 2), (30, 100, 10), (30, 1000, 30), (5, 1000, 5), (1, 0, 1)])
def test_a_young_job_is_checked_often_and_a_long_one_every_poll_interval(poll_interval, watched_s, pause):
    assert next_poll_s(poll_interval, watched_s) == pause
