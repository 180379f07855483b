"""The reuse key: a row stands only for the same model, weights, metadata, month, profile and outputs."""

import dataclasses
from pathlib import Path

import pytest

from scoring.job_settings import JobSettings
from scoring.model_snapshot import ModelSnapshot
from scoring.reuse import row_key, scoring_key

SNAPSHOT = ModelSnapshot(path=Path("/job/model"), digest="a" * 64, metadata={"labels": ["cat", "dog"]})
BASE = dict(model=SNAPSHOT, model_name="m", model_version="1", month="202610", settings=JobSettings())


def _key(**changes) -> str:
    values = {**BASE, **changes}
    return scoring_key(values["model"], values["model_name"], values["model_version"], values["month"],
                       values["settings"])


@pytest.mark.parametrize("change", [
    {"model_name": "other"}, {"model_version": "2"},
    {"model": dataclasses.replace(SNAPSHOT, digest="b" * 64)},  # same name and version, other bytes
    {"model": dataclasses.replace(SNAPSHOT, metadata={"labels": ["cat", "fox"]})},
    {"month": "202611"},
    {"settings": JobSettings(precision="bf16")}, {"settings": JobSettings(batch_size=8)},
    {"settings": JobSettings(max_pixels=1000)},  # the profile
    {"settings": JobSettings(top_k=3)}, {"settings": JobSettings(all_scores=True)},  # the outputs
], ids=lambda change: next(iter(change)) + "=" + str(next(iter(change.values())))[:20])
def test_each_part_of_what_was_scored_changes_the_key(change):
    assert _key(**change) != _key()


def test_settings_that_do_not_change_a_row_keep_the_key():
    # How the job is run (mini-batches, retries, thresholds, workers) does not change what a row says.
    same = JobSettings(mini_batch_size=8, max_retries=0, error_threshold=-1, max_concurrency_per_instance=3,
                       storage_timeout=5)
    assert _key(settings=same) == _key()


def test_a_rows_key_follows_its_name_content_and_scoring():
    key = row_key("a.jpg", "etag-1", _key())
    assert key == row_key("a.jpg", "etag-1", _key())
    assert len({key, row_key("b.jpg", "etag-1", _key()), row_key("a.jpg", "etag-2", _key()),
                row_key("a.jpg", "etag-1", _key(month="202611"))}) == 4
