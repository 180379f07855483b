import datetime as dt
import json
import tracemalloc

import pytest

from batch_scoring.publish import (
    MANIFEST_FILE,
    MonthListing,
    ValidationFailed,
    build_manifest,
    publish_month,
    read_manifest,
    sha256_of,
    validate_outputs,
)

HEADER = "image,label,score,model_name,model_version,month\n"
ERRORS_HEADER = "image,error_type,message\n"


def _outputs(folder, predictions, errors, header=HEADER):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.csv").write_text(header + "".join(predictions), encoding="utf-8")
    (folder / "errors.csv").write_text(ERRORS_HEADER + "".join(errors), encoding="utf-8")
    return folder


def _validate(folder, inputs):
    return validate_outputs(folder, inputs, month="202610", model_name="m", model_version="1")


GOOD = ["a.jpg,circle,0.9,m,1,202610\n", "b.jpg,square,0.8,m,1,202610\n"]
BROKEN = ["c.jpg,corrupt,cannot decode\n"]


def test_valid_outputs_pass_with_counts(tmp_path):
    counts = _validate(_outputs(tmp_path, GOOD, BROKEN), ["a.jpg", "b.jpg", "c.jpg"])
    assert (counts.inputs, counts.scored, counts.errors) == (3, 2, 1)


@pytest.mark.parametrize(
    "predictions, errors, inputs, message",
    [
        (GOOD, BROKEN, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "1 input images are in neither file: 'd.jpg'"),
        (GOOD, BROKEN, ["a.jpg", "b.jpg"], "output rows name no input image: 'c.jpg'"),
        (GOOD, ["a.jpg,corrupt,x\n"], ["a.jpg", "b.jpg"], "appear in both"),
        (GOOD[::-1], [], ["a.jpg", "b.jpg"], "not sorted"),
        ([GOOD[0], GOOD[0]], [], ["a.jpg"], "more than once"),
        (["a.jpg,circle,1.5,m,1,202610\n"], [], ["a.jpg"], "not a probability"),
        (["a.jpg,circle,nan,m,1,202610\n"], [], ["a.jpg"], "not a probability"),
        (["a.jpg,circle,0.5,m,1,202609\n"], [], ["a.jpg"], "month '202609'"),
        (["a.jpg,circle,0.5,m,2,202610\n"], [], ["a.jpg"], "scored by m:2"),
        (["a.jpg,,0.5,m,1,202610\n"], [], ["a.jpg"], "empty label"),
        ([], ["a.jpg,corrupt,x\n"], ["a.jpg"], "none of the 1 input images was scored"),
    ],
)
def test_each_broken_rule_is_named_in_one_line(tmp_path, predictions, errors, inputs, message):
    with pytest.raises(ValidationFailed, match=message) as caught:
        _validate(_outputs(tmp_path, predictions, errors), inputs)
    assert "\n" not in str(caught.value)


WIDE_COLUMNS = ("image", "label", "score", "label_2", "score_2", "labels", "scores", "model_name", "model_version",
                "month")
WIDE = 'a.jpg,cat,0.7,dog,0.2,"[""cat""]","{""cat"": 0.7, ""dog"": 0.2, ""bird"": 0.1}",m,1,202610\n'


def _validate_wide(tmp_path, row):
    folder = _outputs(tmp_path, [row], [], header=",".join(WIDE_COLUMNS) + "\n")
    return validate_outputs(folder, ["a.jpg"], month="202610", model_name="m", model_version="1",
                            columns=WIDE_COLUMNS)


def test_top_k_multi_label_and_every_class_columns_pass_validation(tmp_path):
    assert _validate_wide(tmp_path, WIDE).scored == 1


@pytest.mark.parametrize("row, message", [
    (WIDE.replace("dog,0.2", "dog,0.9"), "above the score before it"),
    (WIDE.replace("dog,0.2", "dog,1.2"), "score_2 '1.2'.*not a probability"),
    (WIDE.replace('"[""cat""]"', "cat"), "labels of 'a.jpg' is not a JSON list"),
    (WIDE.replace('"{""cat"": 0.7, ""dog"": 0.2, ""bird"": 0.1}"', "0.7"), "scores of 'a.jpg' is not a JSON dict"),
])
def test_a_broken_top_k_labels_or_scores_field_is_named(tmp_path, row, message):
    with pytest.raises(ValidationFailed, match=message):
        _validate_wide(tmp_path, row)


def test_wrong_column_order_is_refused(tmp_path):
    folder = _outputs(tmp_path, ["circle,a.jpg,0.9,m,1,202610\n"], [],
                      header="label,image,score,model_name,model_version,month\n")
    with pytest.raises(ValidationFailed, match="columns"):
        _validate(folder, ["a.jpg"])


def test_publish_writes_files_with_content_types_then_a_manifest_with_hashes_time_and_run(tmp_path, blob_service):
    folder = _outputs(tmp_path, GOOD, BROKEN)
    counts = _validate(folder, ["a.jpg", "b.jpg", "c.jpg"])
    (folder / "report.html").write_text("<html></html>", encoding="utf-8")
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
    folder = _outputs(tmp_path, GOOD, BROKEN)
    counts = _validate(folder, ["a.jpg", "b.jpg", "c.jpg"])
    (folder / "report.html").write_text("<html></html>", encoding="utf-8")
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


def test_names_pandas_would_read_as_gaps_or_numbers_stay_names(tmp_path):
    names = ["NA", "null", "0001", "1e3", "nan"]
    rows = [f"{name},circle,0.5,m,1,202610\n" for name in sorted(names)]
    counts = _validate(_outputs(tmp_path, rows, []), names)
    assert counts.scored == 5


def test_validation_reads_in_chunks_and_finds_breaks_across_chunk_edges(tmp_path):
    names = [f"img{index:04d}.jpg" for index in range(1000)]
    rows = [f"{name},circle,0.5,m,1,202610\n" for name in names]
    folder = _outputs(tmp_path, rows, [])
    kwargs = dict(month="202610", model_name="m", model_version="1", chunk_rows=64)
    assert validate_outputs(folder, names, **kwargs).scored == 1000
    duplicated = rows[:128] + [rows[127]] + rows[128:]  # the repeat is the first row of the third chunk
    with pytest.raises(ValidationFailed, match="lists 'img0127.jpg' more than once"):
        validate_outputs(_outputs(tmp_path / "dup", duplicated, []), names, **kwargs)
    with pytest.raises(ValidationFailed, match="1 input images are in neither file: 'img0999.jpg'"):
        validate_outputs(_outputs(tmp_path / "miss", rows[:-1], []), names, **kwargs)


def test_validation_memory_does_not_grow_with_the_rows_beyond_their_hashes(tmp_path):
    """Peak traced memory for 200k rows stays near that of 50k: a chunk plus hashes, not the rows' names."""
    def name(index: int) -> str:
        return f"camera-{index % 7}/2026-10/IMG_{index:09d}.jpg"  # 36 characters: a str of 85 bytes

    def peak(rows: int) -> int:
        names = sorted(name(index) for index in range(rows))
        folder = tmp_path / str(rows)
        folder.mkdir()
        with open(folder / "predictions.csv", "w", encoding="utf-8") as handle:
            handle.write(HEADER)
            handle.writelines(f"{name},circle,0.5,m,1,202610\n" for name in names)
        (folder / "errors.csv").write_text(ERRORS_HEADER, encoding="utf-8")
        del names

        class Inputs:  # re-iterable, never a list in memory
            def __iter__(self):
                return (name(index) for index in range(rows))

        tracemalloc.start()
        try:
            validate_outputs(folder, Inputs(), month="202610", model_name="m", model_version="1", chunk_rows=10_000)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(50_000), peak(200_000)
    # Holding the 150k extra names would add 150k x (85 + 8) bytes = 13 MB; hashes add 150k x ~25 bytes.
    assert large - small < 150_000 * 40, (small, large)
