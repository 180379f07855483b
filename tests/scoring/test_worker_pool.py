"""The worker processes alone: init() once, run() per mini-batch, and what a dead or slow worker looks like."""

import time
from types import SimpleNamespace

import pytest

from scoring.worker_pool import DIED, READY, ROWS, WorkerPool

ENTRY = '''
import os, sys, time

def init():
    return "worker %d ready" % os.getpid()

def run(files):
    if "die" in files:
        os._exit(7)
    if "sleep" in files:
        time.sleep(30)
    return ["row for " + name for name in files]
'''


@pytest.fixture
def pool(tmp_path):
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    pool = WorkerPool(1, code_root=str(tmp_path), entry_script=str(entry), argv=[], logging_level="WARNING")
    pool.start()
    yield pool
    pool.stop()


def _answers(pool, until_kind, timeout=2, limit_s=60):
    deadline = time.monotonic() + limit_s
    seen = []
    while time.monotonic() < deadline:
        seen += pool.answers(timeout=timeout, poll_s=0.5)
        if any(kind == until_kind for _worker, kind, _payload in seen):
            return seen
    raise AssertionError(f"no {until_kind} answer: {seen}")


def test_a_worker_is_ready_once_then_answers_each_batch_with_its_rows(pool):
    worker = next(pool.idle())
    assert pool.send(worker, SimpleNamespace(batch_id="mb-1"), ["a.jpg", "b.jpg"])
    answers = _answers(pool, ROWS)
    kinds = [kind for _worker, kind, _payload in answers]
    assert kinds == [READY, ROWS] and answers[0][2].startswith("worker ") and worker.ready
    assert answers[1][2] == ["row for a.jpg", "row for b.jpg"]
    batch, seconds = pool.release(worker)
    assert batch.batch_id == "mb-1" and seconds >= 0 and list(pool.idle()) == [worker]


def test_a_dead_worker_is_reported_with_its_exit_code_and_replaced(pool):
    worker = next(pool.idle())
    pool.send(worker, SimpleNamespace(batch_id="mb-1"), ["die"])
    died = [answer for answer in _answers(pool, DIED) if answer[1] == DIED]
    assert died == [(worker, DIED, 7)]
    pool.release(worker)
    pool.replace(worker)
    assert pool.workers[0] is not worker and pool.workers[0].process.is_alive()


def test_a_batch_past_its_timeout_is_named_once_the_worker_is_ready(pool):
    worker = next(pool.idle())
    pool.send(worker, SimpleNamespace(batch_id="mb-1"), ["sleep"])
    _answers(pool, READY, timeout=1)
    assert pool.timed_out(1) == []  # the clock starts when init() is done
    time.sleep(1.2)
    assert pool.timed_out(1) == [worker]
