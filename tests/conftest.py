"""Shared fixtures: a real Azurite on a free port, a small model folder, image makers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Airflow reads these at import: keep every test run out of ~/airflow and off the examples.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-tests-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

from support import running_azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    yield from running_azurite(tmp_path_factory, "azurite")


@pytest.fixture
def blob_service(azurite):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """An untrained ResNet-18 over the demo labels: real weights file, real metadata, instant to make."""
    import torch

    from devstack.sample_month import LABELS
    from devstack.train_model import ARCHITECTURE, PREPROCESSING
    from scoring.model import ModelMetadata, build_model, save_model_folder

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "shapes-classifier" / "1"
    metadata = ModelMetadata(name="shapes-classifier", version="1", architecture=ARCHITECTURE, labels=LABELS,
                             preprocessing=PREPROCESSING)
    save_model_folder(folder, build_model(ARCHITECTURE, len(LABELS)), metadata)
    return folder
