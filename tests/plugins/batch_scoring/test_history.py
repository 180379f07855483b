"""The downstream history step on a real blob store (Azurite): verify a published month, record it once."""

import concurrent.futures
import csv
import io

import pytest

from batch_scoring.history import HISTORY_FILE, PublishedMonthMismatch, record_month, verify_published
from batch_scoring.publish import build_manifest, publish_month
from batch_scoring.validation import MonthOutputs


def _publish(tmp_path, container, month: str, scored: int = 2) -> dict:
    folder = tmp_path / f"{month}-{scored}"
    folder.mkdir()
    (folder / "predictions.csv").write_text("image,label\n" + "".join(f"{i}.jpg,circle\n" for i in range(scored)))
    (folder / "errors.csv").write_text("image,error_type,message\n")
    (folder / "report.html").write_text("<html></html>")
    manifest = build_manifest(folder, MonthOutputs(inputs=scored, scored=scored, errors=0), month=month,
                              job_name=f"monthly-batch-scoring-{month}", model_name="m", model_version="1",
                              drift={"warning": False})
    publish_month(container, month, folder, manifest)
    return manifest


@pytest.fixture
def container(blob_service, request):
    client = blob_service.get_container_client(f"history-{abs(hash(request.node.name)) % 10**9}")
    client.create_container()
    yield client
    client.delete_container()


def _table(container) -> list[dict]:
    return list(csv.DictReader(io.StringIO(container.download_blob(HISTORY_FILE).readall().decode())))


def test_a_published_month_is_verified_and_recorded_once_even_when_published_again(tmp_path, container):
    manifest = _publish(tmp_path, container, "202610")
    assert verify_published(container, "202610") == manifest
    record_month(container, manifest)
    again = _publish(tmp_path, container, "202610", scored=3)
    record_month(container, verify_published(container, "202610"))
    table = _table(container)
    assert [(row["month"], row["scored"], row["job_name"]) for row in table] == [
        ("202610", "3", "monthly-batch-scoring-202610")]
    assert table[0]["published_at"] == again["published_at"] and table[0]["drift_warning"] == "False"


def test_a_file_that_is_not_the_manifests_fails_in_one_line_naming_it(tmp_path, container):
    _publish(tmp_path, container, "202610")
    container.upload_blob("202610/predictions.csv", b"image,label\ntampered.jpg,star\n", overwrite=True)
    with pytest.raises(PublishedMonthMismatch) as raised:
        verify_published(container, "202610")
    assert str(raised.value).startswith("202610/predictions.csv is not the file its manifest lists (")
    assert str(raised.value).endswith("publish the month again") and "\n" not in str(raised.value)


def test_a_month_without_a_manifest_or_a_bad_key_is_refused(container):
    with pytest.raises(PublishedMonthMismatch, match=r"^month 202610 has no manifest.json"):
        verify_published(container, "202610")
    with pytest.raises(ValueError, match=r"invalid month '2026-10'"):
        verify_published(container, "2026-10")


def test_months_recorded_at_once_all_keep_their_row(tmp_path, container):
    months = [f"2026{number:02d}" for number in range(1, 9)]
    manifests = [_publish(tmp_path, container, month) for month in months]
    with concurrent.futures.ThreadPoolExecutor(len(months)) as pool:
        list(pool.map(lambda manifest: record_month(container, manifest), manifests))
    assert [row["month"] for row in _table(container)] == months
