import os
import pickle

import pytest
import torch

from scoring.model import ModelFolderError, load_model_folder, read_metadata


class _Payload:
    """Unpickling this runs a command: what `weights_only=True` must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_loads_the_model_in_eval_mode(model_dir):
    model, metadata = load_model_folder(model_dir)
    assert not model.training
    assert metadata.labels == ("circle", "square", "triangle", "cross")
    assert metadata.preprocessing.crop == 64


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refuses_weights_that_would_execute_pickled_code(model_dir, tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "metadata.json").write_text((model_dir / "metadata.json").read_text())
    with open(folder / "weights.pt", "wb") as handle:
        pickle.dump({"weights": _Payload()}, handle)
    with pytest.raises(ModelFolderError, match="would execute pickled code"):
        load_model_folder(folder)


def test_refuses_weights_of_another_architecture(model_dir, tmp_path):
    folder = tmp_path / "mismatch"
    folder.mkdir()
    (folder / "metadata.json").write_text((model_dir / "metadata.json").read_text())
    torch.save({"fc.weight": torch.zeros(2, 2)}, folder / "weights.pt")
    with pytest.raises(ModelFolderError, match="does not fit architecture"):
        load_model_folder(folder)


def test_a_folder_without_metadata_is_named_in_the_error(tmp_path):
    with pytest.raises(ModelFolderError, match=str(tmp_path)):
        read_metadata(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"preprocessing": {"resize": 0}}, "resize=0 and crop=64 must both be >= 1"),
    ({"preprocessing": {"crop": 0}}, "must both be >= 1"),
    ({"preprocessing": {"crop": 65}}, "crop=65 is larger than resize=64"),
    ({"labels": []}, "labels is empty"),
    ({"labels": ["a", "b", "a"]}, "labels are not unique: 'a'"),
    ({"precision_agreement": {"bf16": 1.5}}, "must lie in [0, 1]"),
])
def test_metadata_that_would_fail_every_mini_batch_is_refused_when_the_folder_is_read(model_dir, tmp_path, change,
                                                                                      message):
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    for key, value in change.items():
        metadata[key] = {**metadata[key], **value} if isinstance(value, dict) and key == "preprocessing" else value
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelFolderError) as raised:
        read_metadata(folder)
    assert message in str(raised.value)


def test_check_precision_records_the_agreement_that_auto_reads(model_dir, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from support import write_small_month

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    write_small_month(tmp_path / "images", good=12)
    result = subprocess.run([sys.executable, "-m", "scoring", "check-precision", "--model", str(folder),
                             "--input", str(tmp_path / "images")], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    record = read_metadata(folder).precision_agreement
    assert set(record) == {"bf16", "fp16"} and all(0.0 <= value <= 1.0 for value in record.values())
    assert f"bf16 {record['bf16']:.2%}" in result.stdout
    assert read_metadata(folder).labels == read_metadata(model_dir).labels  # the rest of the metadata is kept
