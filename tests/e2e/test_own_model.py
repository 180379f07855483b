"""A user's own model through the DAG (`airflow dags test`), on its own Azurite and local workspace.

The model's class is not torchvision's (tests/custom_models.py). It is saved the way the original job saved it
(`torch.save(model)`), imported with `python -m scoring import-model --trust_pickled_code`, registered with
`python -m localml register-model`, and scored by the monthly DAG with the outputs a consumer asks for; the
published CSV holds the original model's own probabilities. A pickled model put straight into the registry, or
a version that is not there, fails the run at its model check, before any compute or job.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.items import MONTH_MARKER
import torch

from custom_models import LABELS, save_pickled, save_program, save_torchscript, trained_like
from devstack.airflow_env import airflow_env
from support import image_bytes, running_azurite

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
LOGICAL_DATE = "2026-11-01"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_azurite(tmp_path_factory):
    yield from running_azurite(tmp_path_factory, "own-model-azurite")


@pytest.fixture(scope="module")
def blobs(own_azurite):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(own_azurite.connection_string)
    service.create_container("images")
    return service


@pytest.fixture(scope="module")
def stack(tmp_path_factory, own_azurite, blobs):
    root = tmp_path_factory.mktemp("own-model")
    env = airflow_env(own_azurite, state_dir=root / "state", airflow_home=root / "airflow",
                      deadline_alerts=False)  # `airflow dags test` cannot run the DAG's deadline
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    return root, env


def _run(*args: str, env=None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _register(root: Path, path: Path, name: str, version: str = "1") -> None:
    result = _run("-m", "localml", "register-model", "--path", str(path), "--name", name, "--version", version,
                  "--workspace", str(root / "state" / "localml"))
    assert result.returncode == 0, result.stderr
    assert f"registered {name}:{version}" in result.stdout


def _upload_month(blobs, month: str, count: int = 7) -> list[str]:
    images = blobs.get_container_client("images")
    names = [f"{month}/shots/{index:02d}.{'png' if index % 2 else 'jpg'}" for index in range(count)]
    for index, name in enumerate(names):
        images.upload_blob(name, image_bytes("PNG" if index % 2 else "JPEG", size=(36 + 5 * index, 40)),
                           overwrite=True)
    images.upload_blob(f"{month}/shots/broken.jpg", b"not an image", overwrite=True)
    images.upload_blob(f"{month}/{MONTH_MARKER}", b"", overwrite=True)  # the upload is complete
    return [name.split("/", 1)[1] for name in names]


def _dags_test(env, conf: dict) -> subprocess.CompletedProcess:
    return _run("-m", "airflow", "dags", "test", "-c", json.dumps({"poll_interval": 1, **conf}),
                "monthly_batch_scoring", LOGICAL_DATE, env=env)


def _published(blobs, month: str) -> tuple[list[str], list[dict]]:
    text = blobs.get_container_client("predictions").download_blob(f"{month}/predictions.csv").readall().decode()
    reader = csv.DictReader(io.StringIO(text))
    return reader.fieldnames, list(reader)


def _original_probabilities(model: torch.nn.Module, folder: Path, blobs, month: str, names: list[str],
                            activation) -> dict[str, list[float]]:
    """What the user's original model says of each image, preprocessed as the job's metadata describes."""
    from scoring.image_decode import Preprocessor, decode_image
    from scoring.model_format import locate

    preprocessing = locate(folder).metadata.preprocessing
    preprocess = Preprocessor(preprocessing)
    images = blobs.get_container_client("images")
    found = {}
    for name in names:
        scratch = folder.parent / "scratch" / name
        scratch.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_bytes(images.download_blob(f"{month}/{name}").readall())
        batch = preprocess(decode_image(scratch, min_side=preprocessing.short_side)).unsqueeze(0)
        with torch.inference_mode():
            found[name] = activation(model(batch))[0].tolist()
    return found


def test_a_pickled_model_of_the_users_own_class_is_imported_registered_and_scored_through_the_dag(
        stack, blobs, tmp_path):
    root, env = stack
    month = "202607"
    original = trained_like(seed=3)
    pickled = save_pickled(original, tmp_path / "model.pt")
    folder = tmp_path / "residual-net"
    imported = _run("-m", "scoring", "import-model", "--pickled", str(pickled), "--trust_pickled_code",
                    "--code_path", str(TESTS), "--out", str(folder), "--labels", ",".join(LABELS),
                    "--input_size", "32", "--resize_mode", "stretch", "--interpolation", "bicubic")
    assert imported.returncode == 0, imported.stderr
    _register(root, folder, "residual-net", "2")
    names = _upload_month(blobs, month)

    result = _dags_test(env, {"month": month, "model_name": "residual-net", "model_version": "2", "top_k": 3,
                              "all_scores": True})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "model residual-net:2: torch_export (model.pt2), 3 labels" in result.stdout + result.stderr
    # Imported without --check_images, so no agreement with fp32 is on record: `auto` keeps fp32, as its log says
    # (and the scores below match the original's fp32 softmax to 2e-6, which bf16 would not).
    job_log = (root / "state" / "localml" / "jobs" / f"monthly-batch-scoring-{month}" / "job.log").read_text()
    assert re.search(r"precision auto: fp32, (this CPU has no native bf16|bf16 was never checked for this model)",
                     job_log), job_log[-3000:]

    columns, rows = _published(blobs, month)
    assert columns == ["image", "label", "score", "label_2", "score_2", "label_3", "score_3", "scores",
                       "model_name", "model_version", "month"]
    assert sorted(row["image"] for row in rows) == sorted(names)
    expected = _original_probabilities(original, folder, blobs, month, names, lambda out: out.softmax(dim=1))
    for row in rows:
        probabilities = expected[row["image"]]
        ranked = sorted(zip(probabilities, LABELS), reverse=True)
        assert [row["label"], row["label_2"], row["label_3"]] == [label for _, label in ranked]
        assert float(row["score"]) == pytest.approx(ranked[0][0], abs=2e-6)
        assert json.loads(row["scores"]) == pytest.approx(dict(zip(LABELS, probabilities)), abs=2e-6)
        assert (row["model_name"], row["model_version"], row["month"]) == ("residual-net", "2", month)
    errors = blobs.get_container_client("predictions").download_blob(f"{month}/errors.csv").readall().decode()
    assert "shots/broken.jpg,not_an_image" in errors


def test_a_multi_label_torchscript_model_without_labels_is_scored_with_its_columns(stack, blobs, tmp_path):
    root, env = stack
    month = "202608"
    original = trained_like(seed=4)
    folder = tmp_path / "tagger"
    folder.mkdir()
    save_torchscript(original, folder / "model.ts")
    (folder / "metadata.json").write_text(json.dumps(
        {"multi_label": True, "threshold": 0.45, "preprocessing": {"input_size": 32, "resize_mode": "stretch"}}))
    _register(root, folder, "tagger")
    names = _upload_month(blobs, month)

    result = _dags_test(env, {"month": month, "model_name": "tagger", "model_version": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    columns, rows = _published(blobs, month)
    assert columns == ["image", "label", "score", "labels", "model_name", "model_version", "month"]
    expected = _original_probabilities(original, folder, blobs, month, names, torch.sigmoid)
    for row in rows:
        probabilities = expected[row["image"]]
        assert json.loads(row["labels"]) == [str(i) for i, p in enumerate(probabilities) if p >= 0.45]
        assert row["label"] == str(max(range(3), key=probabilities.__getitem__))


def test_a_program_exported_with_a_fixed_batch_is_scored_at_its_size(stack, blobs, tmp_path):
    root, env = stack
    month = "202609"
    folder = tmp_path / "fixed"
    folder.mkdir()
    save_program(trained_like(seed=5), folder / "model.pt2", dynamic_batch=False)  # batch of 2, 7 images
    (folder / "metadata.json").write_text(json.dumps({"labels": list(LABELS),
                                                      "preprocessing": {"input_size": 32}}))
    _register(root, folder, "fixed")
    names = _upload_month(blobs, month)
    result = _dags_test(env, {"month": month, "model_name": "fixed", "model_version": "1", "mini_batch_size": 3})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    columns, rows = _published(blobs, month)
    assert columns == ["image", "label", "score", "model_name", "model_version", "month"]
    assert sorted(row["image"] for row in rows) == sorted(names)


def _fails_at_the_model_check(root: Path, env, conf: dict) -> str:
    jobs = root / "state" / "localml" / "jobs"
    before = sorted(jobs.iterdir()) if jobs.is_dir() else []
    result = _dags_test(env, conf)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "check_model" in output
    assert (sorted(jobs.iterdir()) if jobs.is_dir() else []) == before  # nothing submitted
    return output


def test_a_pickled_model_put_in_the_registry_fails_the_run_naming_import_model(stack, blobs, tmp_path):
    root, env = stack
    folder = root / "state" / "localml" / "models" / "pickled" / "1"
    folder.mkdir(parents=True)
    save_pickled(trained_like(), folder / "model.pt")  # copied by hand, as on Azure ML: register-model refuses it
    refused = _run("-m", "localml", "register-model", "--path", str(folder / "model.pt"), "--name", "p",
                   "--version", "1", "--workspace", str(root / "state" / "localml"))
    assert refused.returncode == 1 and "python -m scoring import-model --pickled" in refused.stderr
    _upload_month(blobs, "202605", count=2)
    output = _fails_at_the_model_check(root, env, {"month": "202605", "model_name": "pickled", "model_version": "1"})
    assert "python -m scoring import-model --pickled" in output


def test_a_model_version_that_is_not_registered_fails_the_run_at_once_naming_the_versions(stack, blobs,
                                                                                         tmp_path):
    root, env = stack
    _register(root, save_program(trained_like(), tmp_path / "model.pt2"), "versioned", "4")
    _upload_month(blobs, "202606", count=2)
    output = _fails_at_the_model_check(root, env, {"month": "202606", "model_name": "versioned",
                                                   "model_version": "9"})
    assert "model versioned:9 is not registered" in output and "registered versions: 4" in output
