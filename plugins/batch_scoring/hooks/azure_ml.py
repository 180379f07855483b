"""The only code that reads the Azure ML connection and builds clients for it.

Connection `azure_ml_default` (type `azure_ml`), JSON extras:
- Azure ML workspace: `subscription_id`, `resource_group`, `workspace_name`; credentials from
  azure-identity: a service principal when login (client id), password (secret) and
  `tenant_id` are set (one of them alone is refused in one line), else `DefaultAzureCredential`
  (managed/workload identity, environment, CLI).
- Embedded default: `{"backend": "local", "workspace_dir": "...", "wasb_conn_id": "wasb_default",
  "job_page_url": "http://127.0.0.1:8080/batch-scoring/jobs"}` (the last: where the job links point; the
  plugin serves those pages from Airflow's API server; without it the links are the job logs' file paths).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from batch_scoring.backends.base import (
    ComputeSpec,
    DataAsset,
    JobInfo,
    ModelDescription,
    ScoringBackend,
    ScoringJobSpec,
)

LOCAL_BACKEND = "local"


def local_backend_from_extras(conn_id: str, extras: dict[str, Any], storage_extras) -> ScoringBackend:
    """The embedded default's backend for an `azure_ml` connection's extras; `storage_extras(conn_id)` gives the
    extras of the `wasb` connection it names (a hook and the API server's job pages read connections differently)."""
    from batch_scoring.backends.local import LocalBackend

    workspace_dir = extras.get("workspace_dir")
    if not workspace_dir:
        raise ValueError(f"connection {conn_id!r} selects the local backend but sets no workspace_dir")
    wasb_conn_id = extras.get("wasb_conn_id", "wasb_default")
    wasb = storage_extras(wasb_conn_id)
    connection_string = wasb.get("connection_string") or wasb.get("extra__wasb__connection_string")
    if not connection_string:
        raise ValueError(f"connection {wasb_conn_id!r} has no connection_string extra; the local backend needs one")
    return LocalBackend(workspace_dir, connection_string, job_page_url=extras.get("job_page_url"))


class AzureMLHook(BaseHook):
    """Gives operators and triggers a `ScoringBackend` for one `azure_ml` connection.

    :param azure_ml_conn_id: the Azure ML connection id.
    """

    conn_name_attr = "azure_ml_conn_id"
    default_conn_name = "azure_ml_default"
    conn_type = "azure_ml"
    hook_name = "Azure ML (batch scoring)"

    def __init__(self, azure_ml_conn_id: str = default_conn_name):
        super().__init__()
        self.azure_ml_conn_id = azure_ml_conn_id

    @cached_property
    def extras(self) -> dict[str, Any]:
        """The connection's extras by plain name, whether written by hand or by the form (`extra__azure_ml__…`)."""
        extras = self.get_connection(self.azure_ml_conn_id).extra_dejson
        prefix = f"extra__{self.conn_type}__"
        plain = {key: value for key, value in extras.items() if not key.startswith(prefix)}
        for key, value in extras.items():
            if key.startswith(prefix) and value not in (None, ""):
                plain.setdefault(key[len(prefix):], value)
        return plain

    @property
    def is_local(self) -> bool:
        return self.extras.get("backend") == LOCAL_BACKEND

    @cached_property
    def backend(self) -> ScoringBackend:
        """The workspace behind the connection (built once, on first use: SDK import and client)."""
        if self.is_local:
            return self._local_backend()
        return self._azure_backend()

    # The workspace verbs. Operators, the trigger and the publish step call these, not the backend.

    def ensure_compute(self, spec: ComputeSpec) -> dict[str, Any]:
        return self.backend.ensure_compute(spec)

    def register_data_asset(self, asset: DataAsset) -> DataAsset:
        return self.backend.register_data_asset(asset)

    def describe_model(self, name: str, version: str) -> ModelDescription:
        return self.backend.describe_model(name, version)

    def submit_job(self, spec: ScoringJobSpec) -> JobInfo:
        return self.backend.submit_job(spec)

    def get_job(self, name: str) -> JobInfo:
        return self.backend.get_job(name)

    def job_attempts(self, base_name: str) -> list[JobInfo]:
        return self.backend.job_attempts(base_name)

    def cancel_job(self, name: str, *, wait: bool = True) -> JobInfo:
        return self.backend.cancel_job(name, wait=wait)

    def download_outputs(self, name: str, destination: Path) -> Path:
        return self.backend.download_outputs(name, destination)

    def _local_backend(self) -> ScoringBackend:
        return local_backend_from_extras(self.azure_ml_conn_id, self.extras,
                                         lambda conn_id: self.get_connection(conn_id).extra_dejson)

    def _azure_backend(self) -> ScoringBackend:
        from batch_scoring.backends.azure_ml import AzureMLBackend

        missing = [key for key in ("subscription_id", "resource_group", "workspace_name") if not self.extras.get(key)]
        if missing:
            raise ValueError(f"connection {self.azure_ml_conn_id!r} lacks extra field(s) {', '.join(missing)}")
        return AzureMLBackend(self._ml_client(), code_dir=self.extras.get("code_dir"),
                              environment=self.extras.get("environment"))

    def _ml_client(self):
        from azure.ai.ml import MLClient

        return MLClient(
            credential=self._credential(),
            subscription_id=self.extras["subscription_id"],
            resource_group_name=self.extras["resource_group"],
            workspace_name=self.extras["workspace_name"],
            # No upload progress bars: they would land in the task log as terminal escape codes.
            show_progress=False,
        )

    def _credential(self):
        # azure-identity credentials refresh their tokens themselves: long waits survive expiry.
        connection = self.get_connection(self.azure_ml_conn_id)
        tenant_id = self.extras.get("tenant_id")
        if connection.login or connection.password:
            # A half-set service principal must not fall back to another identity without a word.
            missing = [name for name, value in (("login (client id)", connection.login),
                                                ("password (client secret)", connection.password),
                                                ("extra tenant_id", tenant_id)) if not value]
            if missing:
                raise ValueError(f"connection {self.azure_ml_conn_id!r} sets a service principal but lacks "
                                 f"{', '.join(missing)}; set them all, or none to use DefaultAzureCredential")
            from azure.identity import ClientSecretCredential

            return ClientSecretCredential(tenant_id=tenant_id, client_id=connection.login,
                                          client_secret=connection.password)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self.extras.get("managed_identity_client_id"))
