"""Validation of a month's merged outputs against its inputs: every rule broken is one line."""

import tracemalloc

import pytest

from batch_scoring.validation import ValidationFailed, validate_outputs

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
