import csv

import pytest

from scoring.merge import ErrorThresholdExceeded, merge_rows
from scoring.rows import error_row, parse_row, scored_row


def _scored(image):
    return parse_row(scored_row(image, "circle", 0.5, model_name="m", model_version="1", month="202610"))


def _read(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_input_lands_in_exactly_one_file_sorted(tmp_path):
    rows = [_scored("b.jpg"), _scored("a.jpg"), parse_row(error_row("c.jpg", "corrupt", "bad\nbytes"))]
    result = merge_rows(rows, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], tmp_path)
    assert (result.inputs, result.scored, result.errors) == (4, 2, 2)
    assert [r["image"] for r in _read(tmp_path / "predictions.csv")] == ["a.jpg", "b.jpg"]
    errors = _read(tmp_path / "errors.csv")
    # d.jpg has no row at all: on Azure ML its mini-batch failed for good; listed, not lost.
    assert [(r["image"], r["error_type"]) for r in errors] == [("c.jpg", "corrupt"), ("d.jpg", "mini_batch_failed")]
    assert errors[0]["message"] == "bad bytes"


def test_a_retry_that_scored_wins_over_an_earlier_error_and_duplicates_collapse(tmp_path):
    rows = [parse_row(error_row("a.jpg", "corrupt", "x")), _scored("a.jpg"), _scored("a.jpg")]
    result = merge_rows(rows, ["a.jpg"], tmp_path)
    assert (result.scored, result.errors) == (1, 0)
    assert len(_read(tmp_path / "predictions.csv")) == 1


def test_rows_for_unknown_items_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not an input item"):
        merge_rows([_scored("ghost.jpg")], ["a.jpg"], tmp_path)


def test_error_threshold_writes_nothing(tmp_path):
    with pytest.raises(ErrorThresholdExceeded, match="2 of 2 items failed, above error_threshold=1"):
        merge_rows([], ["a.jpg", "b.jpg"], tmp_path / "out", error_threshold=1)
    assert not (tmp_path / "out").exists()


def test_names_with_commas_quotes_and_unicode_survive(tmp_path):
    name = 'dir, with "quotes"/café 1.jpg'
    merge_rows([_scored(name)], [name], tmp_path)
    assert _read(tmp_path / "predictions.csv")[0]["image"] == name


def test_any_file_name_round_trips_through_the_csvs_and_passes_validation(tmp_path):
    """Property-style: names a blob store or a filesystem allows, written, read back and validated unchanged."""
    import random

    from batch_scoring.validation import validate_outputs
    from scoring.items import encode_name

    rng = random.Random(11)
    pieces = ["a", "é", "\r", "\n", "\r\n", '"', "'", ",", ";", "=", "-", "+", "@", " ", "\t", "\x01", "\x7f",
              "\\", "😀", "\u2028", "%", "#"]
    names = {"=cmd|' /C calc'!A0.jpg", "-1+1.png", "line\rbreak.jpg", 'quo"te,comma.jpg',
             encode_name("caf\udce9.jpg")}
    while len(names) < 300:
        names.add("".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) + ".jpg")
    names = sorted(names)
    scored, failed = names[::2], names[1::2]
    rows = [_scored(name) for name in scored] + [parse_row(error_row(n, "corrupt", "bad")) for n in failed]
    merge_rows(rows, names, tmp_path)
    assert [row["image"] for row in _read(tmp_path / "predictions.csv")] == scored
    assert [row["image"] for row in _read(tmp_path / "errors.csv")] == failed
    counts = validate_outputs(tmp_path, names, month="202610", model_name="m", model_version="1")
    assert (counts.inputs, counts.scored, counts.errors) == (300, 150, 150)


def test_rows_come_out_in_code_point_order_whatever_order_they_arrive_in(tmp_path):
    from scoring.rows import in_item_order

    # UTF-16 order would put the emoji before U+FFFD, a case-folding order "B" after "a": code points do neither.
    names = ["\U0001f600.jpg", "\ufffd.jpg", "z.jpg", "é.jpg", "B.jpg", "a.jpg", "a/b.jpg", "a-b.jpg"]
    merge_rows([_scored(name) for name in names], list(reversed(names)), tmp_path)
    written = [row["image"] for row in _read(tmp_path / "predictions.csv")]
    assert written == in_item_order(names)
    assert written.index("\ufffd.jpg") < written.index("\U0001f600.jpg")


def test_the_merge_step_reads_every_file_of_the_rows_folder_the_runtime_wrote(tmp_path):
    """As the Azure ML step runs it: `--rows` is the mounted rows folder, holding the file the parallel runtime
    named itself (and, after a node restart, more than one)."""
    import subprocess
    import sys

    images = tmp_path / "202610"
    images.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (images / name).write_bytes(b"x")
    rows = tmp_path / "rows"
    (rows / "node-1").mkdir(parents=True)
    (rows / "parallel_run_step.txt").write_text(
        scored_row("a.jpg", "circle", 0.5, model_name="m", model_version="1", month="202610") + "\n", "utf-8")
    (rows / "node-1" / "parallel_run_step.txt").write_text(error_row("b.jpg", "corrupt", "bad") + "\n", "utf-8")
    result = subprocess.run([sys.executable, "-m", "scoring.merge", "--rows", str(rows), "--input_root", str(images),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "merged 3 inputs: 1 scored, 2 errors"
    assert [(r["image"], r["error_type"]) for r in _read(tmp_path / "out" / "errors.csv")] == [
        ("b.jpg", "corrupt"), ("c.jpg", "mini_batch_failed")]
