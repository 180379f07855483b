"""The publish step's rule on attempts: only a month's newest attempt publishes, whoever finishes last."""

import pytest

from batch_scoring.backends.base import JobInfo
from batch_scoring.publish_step import PublishRefused, publish_scored_month

BASE = "monthly-batch-scoring-202610"


class _Downloaded(Exception):
    """The step got past the attempt check and asked for the job's outputs."""


class _Workspace:
    def __init__(self, family):
        self.family = family
        self.downloads = []

    def job_attempts(self, base_name):
        return [job for job in self.family if job.name.startswith(base_name)]

    def download_outputs(self, name, destination):
        self.downloads.append(name)
        raise _Downloaded(name)


def _publish(workspace, job_name):
    return publish_scored_month(workspace=workspace, images=None, predictions=None, month="202610",
                                job={"job_name": job_name}, model_name="shapes-classifier", model_version="1")


def test_an_older_attempt_finishing_late_does_not_replace_the_newer_ones_predictions():
    workspace = _Workspace([JobInfo(BASE, "Completed", tags={"model": "shapes-classifier:1"}),
                            JobInfo(f"{BASE}-r1", "Completed", tags={"model": "shapes-classifier:2"})])
    with pytest.raises(PublishRefused) as refused:
        _publish(workspace, BASE)
    assert str(refused.value).startswith(f"job {BASE} is not month 202610's latest attempt: {BASE}-r1 "
                                         "(shapes-classifier:2, Completed) was submitted after it")
    assert workspace.downloads == []  # refused before anything is read or written


def test_the_newest_attempt_publishes():
    workspace = _Workspace([JobInfo(BASE, "Failed"), JobInfo(f"{BASE}-r1", "Completed")])
    with pytest.raises(_Downloaded):
        _publish(workspace, f"{BASE}-r1")
    assert workspace.downloads == [f"{BASE}-r1"]
