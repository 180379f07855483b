import csv

import pytest

from scoring.merge import ErrorThresholdExceeded, merge_rows
from scoring.rows import error_row, parse_row, scored_row


def _scored(image):
    return parse_row(scored_row(image, "circle", 0.5, model_name="m", model_version="1", month="202610"))


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_input_lands_in_exactly_one_file_sorted(tmp_path):
    rows = [_scored("b.jpg"), _scored("a.jpg"), parse_row(error_row("c.jpg", "corrupt", "bad\nbytes"))]
    result = merge_rows(rows, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], tmp_path)
    assert (result.inputs, result.scored, result.errors) == (4, 2, 2)
    assert [r["image"] for r in _read(tmp_path / "predictions.csv")] == ["a.jpg", "b.jpg"]
    errors = _read(tmp_path / "errors.csv")
    assert [(r["image"], r["error_type"]) for r in errors] == [("c.jpg", "corrupt"), ("d.jpg", "missing_result")]
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
