"""Loading the model you have: a .pt2 program, TorchScript, a state dict folder; never unpickling code."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from custom_models import LABELS, save_pickled, save_program, save_torchscript, trained_like
from scoring.model import ModelFolderError, load_model
from scoring.model_format import locate
from scoring.model_metadata import read_metadata
from scoring.predict import Predictor, predictions

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this runs a command: what the job must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _metadata(folder: Path, **values) -> Path:
    (folder / "metadata.json").write_text(json.dumps(values))
    return folder


def test_a_state_dict_folder_loads_in_eval_mode_with_its_labels(model_dir):
    loaded = load_model(model_dir)
    assert not loaded.module.training and loaded.format == "state_dict"
    assert loaded.metadata.labels == ("circle", "square", "triangle", "cross")
    assert loaded.metadata.preprocessing.side == 64 and loaded.fixed_batch is None


def test_a_program_of_the_users_own_class_loads_alone_and_gives_its_outputs(tmp_path):
    model = trained_like()
    path = save_program(model, tmp_path / "mine.pt2")
    loaded = load_model(path)  # a file alone: no metadata.json
    assert loaded.format == "torch_export" and loaded.fixed_batch is None
    assert loaded.metadata.labels == ("0", "1", "2")  # class indices from the output width
    assert loaded.metadata.preprocessing.side == 32  # the program's own input size
    images = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(loaded.module(images), model(images), atol=1e-5)


def test_torchscript_loads_and_a_whole_pickled_model_is_refused_naming_import_model(tmp_path):
    model = trained_like()
    loaded = load_model(save_torchscript(model, tmp_path / "model.ts"))
    assert loaded.format == "torchscript"
    pickled = save_pickled(model, tmp_path / "model.pt")
    with pytest.raises(ModelFolderError) as refused:
        load_model(pickled)
    message = str(refused.value)
    assert "whole pickled model" in message and "custom_models.ResidualNet" in message
    assert "python -m scoring import-model --pickled model.pt --trust_pickled_code" in message
    assert "\n" not in message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_that_would_execute_pickled_code_are_refused(model_dir, tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "metadata.json").write_text((model_dir / "metadata.json").read_text())
    with open(folder / "weights.pt", "wb") as handle:
        pickle.dump({"weights": _Payload()}, handle)
    with pytest.raises(ModelFolderError, match="would run pickled code"):
        load_model(folder)


def test_a_program_carrying_a_pickled_payload_is_refused_before_loading(tmp_path):
    """torch.export.load unpickles payloads marked use_pickle with weights_only=False: the job reads the
    archive first and refuses them."""
    path = save_program(trained_like(), tmp_path / "good.pt2")
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"]))
                config["config"][first]["use_pickle"] = True
                data = json.dumps(config).encode()
                payload_name = config["config"][first]["path_name"]
            target.writestr(item, data)
    with zipfile.ZipFile(evil) as archive:
        assert any(name.endswith(payload_name) for name in archive.namelist())
    with pytest.raises(ModelFolderError, match="carries pickled Python objects"):
        load_model(evil)


def test_a_program_with_a_fixed_batch_runs_at_its_size_and_pads_the_rest(tmp_path):
    model = trained_like()
    loaded = load_model(save_program(model, tmp_path / "fixed.pt2", dynamic_batch=False))
    assert loaded.fixed_batch == 2
    predictor = Predictor(loaded, "cpu")
    images = torch.randn(5, 3, 32, 32)  # 2 + 2 + 1 padded
    with torch.inference_mode():
        expected = torch.softmax(model(images), dim=1)
    assert torch.allclose(predictor.probabilities(images), expected, atol=1e-5)


def test_labels_and_preprocessing_from_metadata_and_a_label_count_that_does_not_match_is_refused(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    save_program(trained_like(), folder / "model.pt2")
    _metadata(folder, labels=list(LABELS), preprocessing={"resize_mode": "stretch", "interpolation": "bicubic"})
    loaded = load_model(folder)
    assert loaded.metadata.labels == LABELS
    assert loaded.metadata.preprocessing.resize_mode == "stretch" and loaded.metadata.preprocessing.side == 32
    _metadata(folder, labels=["a", "b"])
    with pytest.raises(ModelFolderError, match="the model has 3 outputs but metadata.json names 2 labels"):
        load_model(folder)
    _metadata(folder, preprocessing={"input_size": 64})
    with pytest.raises(ModelFolderError, match="says input_size 64 but model.pt2 takes 32x32"):
        load_model(folder)


def test_top_k_every_class_and_multi_label_fields_from_probabilities():
    probabilities = torch.tensor([[0.1, 0.7, 0.2], [float("nan"), 0.5, 0.5]])
    first, broken = predictions(probabilities, LABELS, top_k=2, all_scores=True, multi_label=True, threshold=0.15)
    assert broken is None  # a nan is an error row, never a published nan
    assert (first["label"], first["score"], first["label_2"], first["score_2"]) == ("dog", 0.7, "bird", 0.2)
    assert json.loads(first["labels"]) == ["dog", "bird"]
    assert json.loads(first["scores"]) == {"cat": 0.1, "dog": 0.7, "bird": 0.2}


@pytest.mark.parametrize("kind", ["fifo", "device", "empty"])
def test_a_model_file_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    folder = tmp_path / "m"
    folder.mkdir()
    target = folder / "weights.pt"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")
    else:
        target.write_bytes(b"")
    _metadata(folder, architecture="resnet18")
    with pytest.raises(ModelFolderError, match="not a regular file|is empty"):
        locate(folder)


def test_a_folder_with_no_model_file_is_named_in_the_error(tmp_path):
    with pytest.raises(ModelFolderError, match=f"{tmp_path} holds no model file"):
        locate(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"preprocessing": {"resize": 0}}, "preprocessing.resize=0 must be a whole number of pixels from 1 to 4096"),
    ({"preprocessing": {"resize": 100000}}, "preprocessing.resize=100000 must be a whole number of pixels"),
    ({"preprocessing": {"input_size": "64"}}, "preprocessing.input_size='64' must be a whole number"),
    ({"preprocessing": {"input_size": 64.9}}, "preprocessing.input_size=64.9 must be a whole number"),
    ({"preprocessing": {"input_size": True}}, "preprocessing.input_size=True must be a whole number"),
    ({"preprocessing": {"input_size": 65}}, "input_size=65 is larger than resize=64"),
    ({"preprocessing": {"std": [0, 0.2, 0.2]}}, "preprocessing.std R=0 must be a finite number in (0.0, 1.0]"),
    ({"preprocessing": {"std": ["NaN", 0.2, 0.2]}}, "preprocessing.std R='NaN' must be a finite number"),
    ({"preprocessing": {"mean": [0.5, 0.5]}}, "preprocessing.mean=[0.5, 0.5] must be 3 numbers"),
    ({"preprocessing": {"interpolation": "lanczos"}}, "must be one of bilinear, bicubic, nearest"),
    ({"labels": []}, "labels is empty"),
    ({"labels": ["a", "b", "a"]}, "labels are not unique: 'a'"),
    ({"multi_label": "yes"}, "multi_label='yes' must be true or false"),
    ({"threshold": 1.5}, "threshold=1.5 must be a finite number between 0.0 and 1.0"),
    ({"precision_agreement": {"bf16": 1.5}}, "precision_agreement.bf16=1.5 must be a finite number in [0.0, 1.0]"),
    ({"labelz": ["a"]}, "unknown field(s) labelz"),
])
def test_metadata_that_would_fail_every_mini_batch_is_refused_when_the_folder_is_read(model_dir, tmp_path, change,
                                                                                      message):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    for key, value in change.items():
        metadata[key] = {**metadata[key], **value} if key == "preprocessing" else value
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelFolderError) as raised:
        read_metadata(folder)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_nan_std_in_json_is_refused(model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    text = (folder / "metadata.json").read_text().replace('"std": [\n      0.229', '"std": [\n      NaN')
    (folder / "metadata.json").write_text(text)
    with pytest.raises(ModelFolderError, match="preprocessing.std R=nan must be a finite number"):
        read_metadata(folder)


def test_check_precision_records_the_agreement_that_auto_reads(model_dir, tmp_path):
    from support import write_small_month

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    write_small_month(tmp_path / "images", good=12)
    result = subprocess.run([sys.executable, "-m", "scoring", "check-precision", "--model", str(folder),
                             "--input", str(tmp_path / "images")], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    record = read_metadata(folder).precision_agreement
    assert set(record) == {"bf16", "fp16"} and all(0.0 <= value <= 1.0 for value in record.values())
    assert f"bf16 {record['bf16']:.2%}" in result.stdout
    assert read_metadata(folder).labels == read_metadata(model_dir).labels  # the rest of the metadata is kept
