"""`python -m scoring import-model` and `describe-model`, run as a user runs them: a subprocess, a fresh Python.

The model is the user's own class (tests/custom_models.py, not in torchvision), saved the ways people have it.
The subprocess finds that class only through --code_path, as a user's would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from custom_models import LABELS, save_pickled, save_torchscript, trained_like
from scoring.model import load_model
from scoring.model_metadata import TORCH_EXPORT

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def _scoring(*args: str) -> subprocess.CompletedProcess:
    # cwd outside the clone's tests/ and no PYTHONPATH to them: the user's class is importable only via --code_path
    return subprocess.run([sys.executable, "-m", "scoring", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _outputs_equal_the_originals(folder: Path, original: torch.nn.Module, side: int = 32) -> None:
    loaded = load_model(folder)
    assert loaded.format == TORCH_EXPORT and loaded.fixed_batch is None
    for batch in (1, 5):  # the batch the program was exported with is not the only one it takes
        inputs = torch.randn(batch, 3, side, side)
        with torch.inference_mode():
            torch.testing.assert_close(loaded.module(inputs), original(inputs), rtol=1e-5, atol=1e-5)


def test_a_pickled_model_is_imported_only_on_the_users_word(tmp_path):
    pickled = save_pickled(trained_like(), tmp_path / "model.pt")
    refused = _scoring("import-model", "--pickled", str(pickled), "--out", str(tmp_path / "out"))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {pickled} is a pickle: loading it runs the code it names. If you trust the file, add "
        "--trust_pickled_code (and --code_path for its classes)"]
    assert not (tmp_path / "out").exists()


def test_a_pickled_model_whose_class_cannot_be_found_says_which_flag_brings_it(tmp_path):
    pickled = save_pickled(trained_like(), tmp_path / "model.pt")
    result = _scoring("import-model", "--pickled", str(pickled), "--trust_pickled_code", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "custom_models" in result.stderr and "--code_path" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_imported_pickled_model_gives_the_originals_outputs_and_says_how_to_register_it(tmp_path):
    original = trained_like()
    pickled = save_pickled(original, tmp_path / "model.pt")
    out = tmp_path / "residual-net"
    result = _scoring("import-model", "--pickled", str(pickled), "--trust_pickled_code", "--code_path", str(TESTS),
                      "--out", str(out), "--name", "residual-net", "--version", "3", "--labels", ",".join(LABELS),
                      "--input_size", "32", "--resize_mode", "stretch")
    assert result.returncode == 0, result.stderr
    assert "largest output difference against the original" in result.stdout
    assert f"az ml model create --name residual-net --version 3 --type custom_model --path {out}" in result.stdout
    assert f"python -m localml register-model --path {out} --name residual-net --version 3" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.pt2"]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["format"] == TORCH_EXPORT and metadata["labels"] == list(LABELS)
    assert metadata["preprocessing"]["resize_mode"] == "stretch"
    _outputs_equal_the_originals(out, original)


def test_a_torchscript_file_becomes_a_program_with_a_dynamic_batch(tmp_path):
    original = trained_like(seed=1)
    scripted = save_torchscript(original, tmp_path / "model.ts")
    out = tmp_path / "out"
    result = _scoring("import-model", "--torchscript", str(scripted), "--out", str(out), "--input_size", "32")
    assert result.returncode == 0, result.stderr
    _outputs_equal_the_originals(out, original)
    # No labels given: class indices, written down so the published CSV and the metadata agree.
    assert json.loads((out / "metadata.json").read_text())["labels"] == ["0", "1", "2"]


def test_a_state_dict_with_its_torchvision_architecture_is_imported(tmp_path, model_dir):
    from devstack.sample_month import LABELS as SHAPES
    from devstack.train_model import ARCHITECTURE

    out = tmp_path / "out"
    result = _scoring("import-model", "--state_dict", str(model_dir / "weights.pt"), "--architecture", ARCHITECTURE,
                      "--out", str(out), "--input_size", "64", "--labels", ",".join(SHAPES))
    assert result.returncode == 0, result.stderr
    original = load_model(model_dir).module
    _outputs_equal_the_originals(out, original, side=64)


def test_a_state_dict_of_another_architecture_is_refused_in_one_line(tmp_path, model_dir):
    result = _scoring("import-model", "--state_dict", str(model_dir / "weights.pt"), "--architecture", "resnet34",
                      "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "does not fit resnet34" in result.stderr
    assert "Missing key(s)" in result.stderr or "size mismatch" in result.stderr  # the reason, not only a heading
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_model_whose_outputs_change_when_traced_fails_the_import(tmp_path):
    class Branchy(torch.nn.Module):  # behaves differently while exported: the program keeps the other branch
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x):
            scale = 10.0 if torch.compiler.is_exporting() else 1.0
            return self.head(x.mean(dim=(2, 3))) * scale

    from scoring.model_import import ImportFailed, import_model
    from scoring.model_metadata import ModelMetadata, Preprocessing

    with pytest.raises(ImportFailed, match="differ from the original's"):
        import_model(Branchy().eval(), ModelMetadata(preprocessing=Preprocessing(input_size=16)), tmp_path / "o")


def test_check_images_records_the_reduced_precision_agreement(tmp_path):
    from support import image_bytes

    images = tmp_path / "images"
    images.mkdir()
    for index in range(6):
        (images / f"{index}.png").write_bytes(image_bytes("PNG", size=(40 + index, 36)))
    pickled = save_pickled(trained_like(), tmp_path / "model.pt")
    out = tmp_path / "out"
    result = _scoring("import-model", "--pickled", str(pickled), "--trust_pickled_code", "--code_path", str(TESTS),
                      "--out", str(out), "--input_size", "32", "--check_images", str(images))
    assert result.returncode == 0, result.stderr
    assert "top-1 agreement with fp32" in result.stdout
    recorded = json.loads((out / "metadata.json").read_text())["precision_agreement"]
    assert set(recorded) >= {"bf16"} and all(0.0 <= value <= 1.0 for value in recorded.values())


def test_describe_model_says_what_the_job_will_use(tmp_path):
    pickled = save_pickled(trained_like(), tmp_path / "model.pt")
    out = tmp_path / "out"
    assert _scoring("import-model", "--pickled", str(pickled), "--trust_pickled_code", "--code_path", str(TESTS),
                    "--out", str(out), "--input_size", "32", "--multi_label", "--threshold", "0.4").returncode == 0
    described = _scoring("describe-model", str(out / "model.pt2"))
    assert described.returncode == 0, described.stderr
    lines = dict(line.split(None, 1) for line in described.stdout.splitlines())
    assert lines["format"].startswith(f"{TORCH_EXPORT} (sha256 ")
    assert lines["classes"].startswith("3, class indices")
    assert lines["outputs"] == "multi-label: sigmoid per class, threshold 0.4"
    assert lines["input"] == "3x32x32, any batch size"
    assert "precision=auto scores in fp32" in lines["precision"]


def test_describe_model_refuses_a_pickled_model_naming_import_model(tmp_path):
    pickled = save_pickled(trained_like(), tmp_path / "model.pt")
    described = _scoring("describe-model", str(pickled))
    assert described.returncode == 1
    assert "python -m scoring import-model --pickled" in described.stderr
    assert len(described.stderr.strip().splitlines()) == 1
