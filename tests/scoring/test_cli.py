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
    with open(path / name, encoding="utf-8") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def test_scores_a_local_folder(tmp_path, model_dir):
    expected = write_small_month(tmp_path / "202605")
    result = _cli("score", "--input", str(tmp_path / "202605"), "--model", str(model_dir), "--out", str(tmp_path / "out"),
                  "--mini_batch_size", "4", "--workers", "1", "--precision", "bf16", "--channels_last")
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
    result = _cli("score", "--input", url, "--model", str(model_dir), "--out", str(tmp_path / "out"), "--workers", "1",
                  env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    assert result.returncode == 0, result.stderr
    assert set(_images(tmp_path / "out", "predictions.csv")) == {i for i, o in expected.items() if o == "ok"}
    assert {row["month"] for row in _images(tmp_path / "out", "predictions.csv").values()} == {"202604"}


def test_a_broken_threshold_exits_non_zero_with_one_line(tmp_path, model_dir):
    write_small_month(tmp_path / "in")
    result = _cli("score", "--input", str(tmp_path / "in"), "--model", str(model_dir), "--out", str(tmp_path / "out"),
                  "--error_threshold", "1", "--workers", "1")
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
