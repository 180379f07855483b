"""One job-state vocabulary for both backends: what ends a wait is not always what has stopped running."""

from scoring.job_states import FAILURE_STATES, FINISHED_STATUSES, TERMINAL_STATUSES, JobStatus


def test_not_responding_ends_the_wait_as_a_failure_but_may_still_run():
    assert JobStatus.NOT_RESPONDING in TERMINAL_STATUSES and JobStatus.NOT_RESPONDING in FAILURE_STATES
    assert JobStatus.NOT_RESPONDING not in FINISHED_STATUSES  # the next attempt cancels it first


def test_both_backends_read_the_one_vocabulary():
    from batch_scoring.backends import base
    from localml import jobs

    assert base.JobStatus is JobStatus and jobs.JobStatus is JobStatus
    assert base.FINISHED_STATUSES is FINISHED_STATUSES and jobs.FINISHED_STATUSES is FINISHED_STATUSES
    assert FINISHED_STATUSES == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
