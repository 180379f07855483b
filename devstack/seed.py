"""Put a sample month and the demo model where a running stack's connections point (e.g. the compose stack).

`python -m devstack.seed --month 202610` reads the `wasb_default` and
`azure_ml_default` connections from AIRFLOW_CONN_* environment variables, as
Airflow itself does, uploads a generated month to the `images` container and
trains and registers the demo model in the local workspace's registry.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from devstack.demo import upload_month
from devstack.sample_month import write_month
from devstack.train_model import MODEL_NAME, MODEL_VERSION, ensure_registered


def _connection_extra(variable: str) -> dict:
    value = os.environ.get(variable)
    if not value:
        raise SystemExit(f"error: {variable} is not set; run this where the Airflow services run")
    return json.loads(value).get("extra", {})


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default="202610")
    args = parser.parse_args()
    connection_string = _connection_extra("AIRFLOW_CONN_WASB_DEFAULT").get("connection_string")
    if not connection_string:
        raise SystemExit("error: wasb_default has no connection_string extra (the seed is for Azurite stacks)")
    blobs = BlobServiceClient.from_connection_string(connection_string)
    workspace = _connection_extra("AIRFLOW_CONN_AZURE_ML_DEFAULT").get("workspace_dir")
    if not workspace:
        raise SystemExit("error: azure_ml_default is not the local backend; register the model in Azure ML instead")
    with tempfile.TemporaryDirectory(prefix="sample-month-") as scratch:
        write_month(Path(scratch), args.month)
        count = upload_month(blobs, Path(scratch) / args.month, args.month)
    print(f"uploaded {count} files to images/{args.month}/")
    folder = ensure_registered(Path(workspace) / "models", MODEL_NAME, MODEL_VERSION)
    print(f"model {MODEL_NAME}:{MODEL_VERSION} registered at {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
