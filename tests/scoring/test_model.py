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
