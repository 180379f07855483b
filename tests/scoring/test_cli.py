"""`python -m scoring score` end to end: a local folder and an Azurite blob folder."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    progress = json.loads((tmp_path / "out" / ".scoring-work" / "progress.json").read_text())  # as data
    assert (progress["phase"], progress["items_done"], progress["errors"]) == ("done", 9, 3)
    assert 0 < progress["workers_ready_s"] <= progress["elapsed_s"]


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
    from scoring.blob_inputs import split_blob_url  # here: a GPU host runs this module's decoder test without azure

    assert split_blob_url(url) == expected


def test_a_folder_with_odd_entries_is_scored_and_every_entry_accounted_for(tmp_path, model_dir):
    """Non-UTF-8 names, a carriage return, links in and out, a FIFO: each one row, nothing read outside."""
    import os

    from batch_scoring.validation import validate_outputs
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


def test_score_help_prints_every_option_with_its_help():
    result = _cli("score", "--help")  # argparse formats help with %: a bare % in a help text crashes it
    assert result.returncode == 0, result.stderr
    for option in ("--mini_batch_size", "--top_k", "--all_scores", "--max_pixels", "--storage_timeout"):
        assert option in result.stdout


@pytest.mark.parametrize("month", ["2026-13", "２０２６１０", "202610\n"])
def test_a_bad_month_is_refused_by_the_month_rule_in_one_line(tmp_path, model_dir, month):
    write_small_month(tmp_path / "in")
    result = _cli("score", "--input", str(tmp_path / "in"), "--model", str(model_dir), "--out", str(tmp_path / "out"),
                  "--month", month)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: invalid month {month!r}: expected YYYYMM, six digits, e.g. 202610 for October 2026"]
    assert not (tmp_path / "out").exists()


def test_an_out_folder_inside_the_input_is_refused_before_anything_is_written(tmp_path, model_dir):
    write_small_month(tmp_path / "202605")
    out = tmp_path / "202605" / "scored"
    result = _cli("score", "--input", str(tmp_path / "202605"), "--model", str(model_dir), "--out", str(out))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "inside --input" in result.stderr
    assert not out.exists()


def test_a_second_run_on_the_same_out_fails_at_once_while_the_first_holds_it(tmp_path, model_dir):
    import fcntl

    from scoring.cli import LOCK_FILE, WORK_DIR

    write_small_month(tmp_path / "in")
    lock_path = tmp_path / "out" / WORK_DIR / LOCK_FILE
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "w") as held:  # what a running CLI holds on its --out
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _cli("score", "--input", str(tmp_path / "in"), "--model", str(model_dir), "--out",
                      str(tmp_path / "out"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "another run" in result.stderr
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_a_file_replaced_with_its_size_and_time_kept_is_rescored_on_resume(tmp_path, model_dir):
    write_small_month(tmp_path / "in")
    common = ("--input", str(tmp_path / "in"), "--model", str(model_dir), "--out", str(tmp_path / "out"),
              "--max_concurrency_per_instance", "1", "--month", "202605")
    assert _cli("score", *common).returncode == 0
    target = tmp_path / "in" / "circle" / "img 00.jpg"
    assert "circle/img 00.jpg" in _images(tmp_path / "out", "predictions.csv")
    replacement = tmp_path / "replacement"
    replacement.write_bytes(b"\0" * target.stat().st_size)  # same size, other bytes, not an image
    stat = target.stat()
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    subprocess.run(["cp", "-p", str(replacement), str(target)], check=True)  # as cp -p, rsync -a or tar leave it
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    again = _cli("score", *common)
    assert again.returncode == 0, again.stderr
    assert "circle/img 00.jpg" not in _images(tmp_path / "out", "predictions.csv")
    assert _images(tmp_path / "out", "errors.csv")["circle/img 00.jpg"]["error_type"] == "not_an_image"
    assert "(8 rows reused)" in again.stderr


def test_a_model_file_changed_in_place_rescores_every_row(tmp_path, model_dir):
    import shutil

    import torch

    write_small_month(tmp_path / "in")
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    common = ("--input", str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"),
              "--max_concurrency_per_instance", "1", "--month", "202605")
    assert _cli("score", *common).returncode == 0
    state = torch.load(model / "weights.pt", weights_only=True)
    torch.save({key: value + 0.01 if value.is_floating_point() else value for key, value in state.items()},
               model / "weights.pt")  # same name, same version, other weights
    again = _cli("score", *common)
    assert again.returncode == 0, again.stderr
    assert "(0 rows reused)" in again.stderr  # the key holds the model bytes: nothing of the old model stands


def test_the_cli_builds_its_commands_without_importing_torch():
    # score's main process only plans and merges: torch's import time and memory belong to the workers
    probe = "import sys; import scoring.cli as cli; cli.build_parser(); print(sorted({'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_store_that_accepts_and_never_answers_fails_within_the_storage_timeout(tmp_path, model_dir):
    import socket
    import time

    with socket.socket() as silent:  # connections complete in the kernel's backlog; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/devstoreaccount1"
        connection_string = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                             f"BlobEndpoint={endpoint};")
        started = time.monotonic()
        result = _cli("score", "--input", f"{endpoint}/images/202610", "--model", str(model_dir),
                      "--out", str(tmp_path / "out"), "--storage_timeout", "4",
                      env={"AZURE_STORAGE_CONNECTION_STRING": connection_string})
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the blob store at {endpoint}/images/202610/ did not answer for 4s"), last
    # The limit holds for a request that hangs too (the usual read timeout is 60 s); start-up takes a few seconds.
    assert elapsed < 4 + 15, elapsed


def test_an_images_row_does_not_depend_on_its_worker_neighbours_or_mini_batch(tmp_path, model_dir):
    from support import write_odd_images

    count = write_odd_images(tmp_path / "202610")
    runs = {"one by one": ("--mini_batch_size", "1", "--max_concurrency_per_instance", "1", "--decode_threads", "0"),
            "mixed": ("--mini_batch_size", "16", "--max_concurrency_per_instance", "2", "--decode_threads", "3")}
    outputs = {}
    for label, options in runs.items():
        out = tmp_path / label
        result = _cli("score", "--input", str(tmp_path / "202610"), "--model", str(model_dir), "--out", str(out),
                      "--error_threshold", "-1", *options)
        assert result.returncode == 0, result.stderr
        outputs[label] = {name: (out / name).read_text(encoding="utf-8") for name in ("predictions.csv", "errors.csv")}
    first, second = outputs.values()
    assert first == second
    assert sum(text.count("\n") - 1 for text in first.values()) == count


def test_the_batched_jpeg_decoder_lists_the_same_errors_and_scores_the_same_files(tmp_path, model_dir):
    """`--decoder torchvision` (decode_jpeg on the CPU here, nvJPEG on a GPU node) over every odd file of each
    format plus odd JPEGs: the same errors.csv byte for byte, the same files scored, the same top-1 labels."""
    from support import DECODE_DEVICE, image_bytes, write_odd_images

    month = tmp_path / "202610"
    count = write_odd_images(month)
    odd_jpegs = {"cmyk.jpg": image_bytes("JPEG", mode="CMYK", color=(0, 100, 100, 0)),
                 "progressive.jpg": image_bytes("JPEG", size=(300, 200), progressive=True),
                 "grey.jpg": image_bytes("JPEG", mode="L", size=(120, 90)),
                 "trailing.jpg": image_bytes("JPEG", size=(80, 60)) + b"\x00" * 64 + b"trailer",
                 "large.jpg": image_bytes("JPEG", size=(2400, 1800), color=(20, 200, 90))}
    for name, data in odd_jpegs.items():
        (month / name).write_bytes(data)
    outputs = {}
    for decoder in ("pillow", "torchvision"):
        out = tmp_path / decoder
        result = _cli("score", "--input", str(month), "--model", str(model_dir), "--out", str(out),
                      "--error_threshold", "-1", "--decoder", decoder, "--mini_batch_size", "8",
                      "--device", DECODE_DEVICE)
        assert result.returncode == 0, result.stderr
        with open(out / "predictions.csv", newline="", encoding="utf-8") as handle:
            labels = {row["image"]: row["label"] for row in csv.DictReader(handle)}
        outputs[decoder] = (labels, (out / "errors.csv").read_text(encoding="utf-8"))
    (pillow_labels, pillow_errors), (batched_labels, batched_errors) = outputs.values()
    assert batched_errors == pillow_errors
    assert batched_labels == pillow_labels
    assert len(pillow_labels) + pillow_errors.count("\n") - 1 == count + len(odd_jpegs)
