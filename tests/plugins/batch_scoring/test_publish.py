import json

import pytest

from batch_scoring.publish import (
    MANIFEST_FILE,
    ValidationFailed,
    build_manifest,
    list_month_items,
    publish_month,
    sha256_of,
    validate_outputs,
)
from batch_scoring.report import write_report

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


def test_wrong_column_order_is_refused(tmp_path):
    folder = _outputs(tmp_path, ["circle,a.jpg,0.9,m,1,202610\n"], [],
                      header="label,image,score,model_name,model_version,month\n")
    with pytest.raises(ValidationFailed, match="columns"):
        _validate(folder, ["a.jpg"])


def test_publish_writes_files_then_a_manifest_with_their_hashes(tmp_path, blob_service):
    folder = _outputs(tmp_path, GOOD, BROKEN)
    counts = _validate(folder, ["a.jpg", "b.jpg", "c.jpg"])
    write_report(folder, month="202610", model="m:1", job_name="j")
    manifest = build_manifest(folder, counts, run_id="r1", month="202610", job_name="j")
    container = blob_service.get_container_client("published-test")
    written = publish_month(container, "202610", folder, manifest)
    assert written == ["202610/predictions.csv", "202610/errors.csv", "202610/report.md", "202610/manifest.json"]
    stored = json.loads(container.download_blob(f"202610/{MANIFEST_FILE}").readall())
    assert stored["counts"] == {"inputs": 3, "scored": 2, "errors": 1}
    assert stored["files"]["predictions.csv"]["sha256"] == sha256_of(folder / "predictions.csv")
    published = ["errors.csv", "manifest.json", "predictions.csv", "report.md"]
    assert list_month_items(container, "202610") == published
    assert stored["files"]["report.md"]["sha256"] == sha256_of(folder / "report.md")
    # Publishing again overwrites: same names, same content, still one manifest.
    publish_month(container, "202610", folder, manifest)
    assert list_month_items(container, "202610") == published


def test_the_report_shows_counts_label_mix_scores_and_errors(tmp_path):
    folder = _outputs(tmp_path, GOOD + ["d.jpg,circle,0.95,m,1,202610\n"], BROKEN)
    text = write_report(folder, month="202610", model="m:1", job_name="j").read_text(encoding="utf-8")
    assert "- images: 4" in text and "- scored: 3 (75.0%)" in text and "- errors: 1" in text
    assert "| circle | 2 | 66.7% |" in text and "| square | 1 | 33.3% |" in text
    assert "| 0.9–1.0 | 2 |" in text and "| 0.8–0.9 | 1 |" in text
    assert "| corrupt | 1 | `c.jpg`: cannot decode |" in text


def test_names_cannot_break_the_report_tables(tmp_path):
    folder = _outputs(tmp_path, ["a.jpg,circle,0.9,m,1,202610\n"], ['"x|`y`.jpg",corrupt,bad | worse\n'])
    text = write_report(folder, month="202610", model="m:1", job_name="j").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| corrupt"))
    assert row == "| corrupt | 1 | `x\\|'y'.jpg`: bad \\| worse |"
