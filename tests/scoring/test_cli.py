"""`python -m scoring score` end to end: a local folder and an Azurite blob folder."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.blob_inputs import split_blob_url
from scoring.cli import build_parser
from support import write_small_month

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "scoring", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})})


def _images(path: Path, name: str) -> dict[str, str]:
    with open(path / name, encoding="utf-8", newline="") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def test_scores_a_local_folder(tmp_path, model_dir):
    expected = write_small_month(tmp_path / "202605")
    result = _cli("score", "--input", str(tmp_path / "202605"), "--model", str(model_dir), "--out", str(tmp_path / "out"),
                  "--mini_batch_size", "4", "--max_concurrency_per_instance", "1", "--precision", "bf16", "--channels_last", "on")
    assert result.returncode == 0, result.stderr
    assert "9 images: 6 scored, 3 errors" in result.stdout
    assert "job done" in result.stderr
    predictions = _images(tmp_path / "out", "predictions.csv")
    assert set(predictions) == {item for item, outcome in expected.items() if outcome == "ok"}
    assert {row["month"] for row in predictions.values()} == {"202605"}
    assert set(_images(tmp_path / "out", "errors.csv")) == {i for i, o in expected.items() if o != "ok"}


def test_scores_a_blob_folder(tmp_path, model_dir, azurite, blob_service):
    expected = write_small_month(tmp_path / "month")
    container = blob_service.create_container("cliimages")
    for path in (p for p in (tmp_path / "month").rglob("*") if p.is_file()):
        container.upload_blob(f"drop/202604/{path.relative_to(tmp_path / 'month').as_posix()}", path.read_bytes())
    url = f"{azurite.blob_endpoint}/cliimages/drop/202604"
    result = _cli("score", "--input", url, "--model", str(model_dir), "--out", str(tmp_path / "out"), "--max_concurrency_per_instance", "1",
                  env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    assert result.returncode == 0, result.stderr
    assert set(_images(tmp_path / "out", "predictions.csv")) == {i for i, o in expected.items() if o == "ok"}
    assert {row["month"] for row in _images(tmp_path / "out", "predictions.csv").values()} == {"202604"}


def test_a_broken_threshold_exits_non_zero_with_one_line(tmp_path, model_dir):
    write_small_month(tmp_path / "in")
    result = _cli("score", "--input", str(tmp_path / "in"), "--model", str(model_dir), "--out", str(tmp_path / "out"),
                  "--error_threshold", "1", "--max_concurrency_per_instance", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "above error_threshold=1" in result.stderr


def test_help_documents_every_option():
    score = build_parser()._subparsers._group_actions[0].choices["score"]
    for action in score._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"--{action.dest} has no help"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://acct.blob.core.windows.net/images/202610", ("https://acct.blob.core.windows.net", "images", "202610/")),
        ("http://127.0.0.1:10000/devstoreaccount1/images/a/b/", ("http://127.0.0.1:10000/devstoreaccount1", "images", "a/b/")),
        ("https://acct.blob.core.windows.net/images", ("https://acct.blob.core.windows.net", "images", "")),
    ],
)
def test_blob_urls_are_split_into_account_container_and_folder(url, expected):
    assert split_blob_url(url) == expected


def test_a_folder_with_odd_entries_is_scored_and_every_entry_accounted_for(tmp_path, model_dir):
    """Non-UTF-8 names, a carriage return, links in and out, a FIFO: each one row, nothing read outside."""
    import os

    from batch_scoring.publish import validate_outputs
    from scoring.items import walk_folder
    from support import image_bytes

    month = tmp_path / "202609"
    month.mkdir()
    (tmp_path / "secret.jpg").write_bytes(image_bytes("JPEG"))
    for raw in (b"caf\xe9.jpg", b"line\rbreak.jpg", b"ok.jpg", b'quo"te, =1.jpg'):
        with open(os.path.join(os.fsencode(month), raw), "wb") as handle:
            handle.write(image_bytes("JPEG"))
    (month / "outside.jpg").symlink_to(tmp_path / "secret.jpg")
    (month / "loop").symlink_to(month)
    os.mkfifo(month / "pipe.jpg")
    result = _cli("score", "--input", str(month), "--model", str(model_dir), "--out", str(tmp_path / "out"),
                  "--max_concurrency_per_instance", "1")
    assert result.returncode == 0, result.stderr
    assert "7 images: 4 scored, 3 errors" in result.stdout
    names = [item.name for item in walk_folder(month)]
    counts = validate_outputs(tmp_path / "out", names, month="202609", model_name="shapes-classifier",
                              model_version="1")
    assert (counts.inputs, counts.scored, counts.errors) == (7, 4, 3)
    assert "caf\\xe9.jpg" in _images(tmp_path / "out", "predictions.csv")
    assert "line\rbreak.jpg" in _images(tmp_path / "out", "predictions.csv")


def test_a_rerun_on_the_same_out_with_another_month_rescores_every_row(tmp_path, model_dir):
    write_small_month(tmp_path / "in")
    common = ("--input", str(tmp_path / "in"), "--model", str(model_dir), "--out", str(tmp_path / "out"),
              "--max_concurrency_per_instance", "1")
    assert _cli("score", *common, "--month", "202601").returncode == 0
    result = _cli("score", *common, "--month", "202602")
    assert result.returncode == 0, result.stderr
    assert {row["month"] for row in _images(tmp_path / "out", "predictions.csv").values()} == {"202602"}
    assert "(0 rows reused)" in result.stderr
    again = _cli("score", *common, "--month", "202602")
    assert "(9 rows reused)" in again.stderr  # and the same month again: nothing scored twice


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, model_dir):
    write_small_month(tmp_path / "in")
    (tmp_path / "out").write_text("a file where the folder should be")
    result = _cli("score", "--input", str(tmp_path / "in"), "--model", str(model_dir), "--out",
                  str(tmp_path / "out"), "--max_concurrency_per_instance", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: cannot use {tmp_path / 'out' / '.scoring-work'}: "
                                                  "Not a directory"]
