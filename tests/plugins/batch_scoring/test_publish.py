"""Publishing a validated month: files with their content types, the old manifest removed first, the new last."""

import datetime as dt
import json

from batch_scoring.month_listing import MonthListing
from batch_scoring.publish import MANIFEST_FILE, build_manifest, publish_month, read_manifest, sha256_of
from batch_scoring.validation import MonthOutputs

counts = MonthOutputs(inputs=3, scored=2, errors=1)


def _outputs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.csv").write_text("image,label,score,model_name,model_version,month\n"
                                            "a.jpg,circle,0.9,m,1,202610\nb.jpg,square,0.8,m,1,202610\n")
    (folder / "errors.csv").write_text("image,error_type,message\nc.jpg,corrupt,cannot decode\n")
    (folder / "report.html").write_text("<html></html>", encoding="utf-8")
    return folder


def test_publish_writes_files_with_content_types_then_a_manifest_with_hashes_time_and_run(tmp_path, blob_service):
    folder = _outputs(tmp_path)
    published_at = dt.datetime(2026, 11, 1, 0, 5, tzinfo=dt.timezone.utc)
    manifest = build_manifest(folder, counts, run_id="r1", month="202610", job_name="j", published_at=published_at)
    container = blob_service.get_container_client("published-test")
    written = publish_month(container, "202610", folder, manifest)
    assert written == ["202610/predictions.csv", "202610/errors.csv", "202610/report.html", "202610/manifest.json"]
    stored = json.loads(container.download_blob(f"202610/{MANIFEST_FILE}").readall())
    assert stored["counts"] == {"inputs": 3, "scored": 2, "errors": 1}
    assert stored["published_at"] == "2026-11-01T00:05:00+00:00" and stored["run_id"] == "r1"
    assert stored["files"]["predictions.csv"]["sha256"] == sha256_of(folder / "predictions.csv")
    published = ["errors.csv", "manifest.json", "predictions.csv", "report.html"]
    assert sorted(MonthListing(container, "202610")) == published
    types = {blob.name: blob.content_settings.content_type
             for blob in container.list_blobs(name_starts_with="202610/", include=["metadata"])}
    assert types == {"202610/predictions.csv": "text/csv; charset=utf-8", "202610/errors.csv": "text/csv; charset=utf-8",
                     "202610/report.html": "text/html; charset=utf-8", "202610/manifest.json": "application/json"}
    assert read_manifest(container, "202610") == stored and read_manifest(container, "202609") is None
    # Publishing again overwrites: same names, same content, still one manifest.
    publish_month(container, "202610", folder, manifest)
    assert sorted(MonthListing(container, "202610")) == published


class _RecordingContainer:
    """A container client that records each call in order, over a real one."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def create_container(self):
        self.calls.append(("create_container",))
        return self.real.create_container()

    def delete_blob(self, name):
        self.calls.append(("delete", name))
        return self.real.delete_blob(name)

    def upload_blob(self, name, data, **kwargs):
        self.calls.append(("upload", name))
        return self.real.upload_blob(name, data, **kwargs)


def test_publishing_again_removes_the_old_manifest_first_and_writes_the_new_one_last(tmp_path, blob_service):
    """A reader who starts from the manifest never sees a mix: observed on the calls the store receives."""
    folder = _outputs(tmp_path)
    manifest = build_manifest(folder, counts, run_id="r2", month="202610", job_name="j")
    real = blob_service.get_container_client("publish-order")
    real.create_container()
    real.upload_blob(f"202610/{MANIFEST_FILE}", b'{"run_id": "r1"}')  # the previous publish's
    recording = _RecordingContainer(real)
    publish_month(recording, "202610", folder, manifest)
    writes = [call for call in recording.calls if call[0] in ("delete", "upload")]
    assert writes[0] == ("delete", f"202610/{MANIFEST_FILE}")
    assert writes[-1] == ("upload", f"202610/{MANIFEST_FILE}")
    assert {name for kind, name in writes[1:-1]} == {"202610/predictions.csv", "202610/errors.csv",
                                                      "202610/report.html"}
    assert json.loads(real.download_blob(f"202610/{MANIFEST_FILE}").readall())["run_id"] == "r2"
