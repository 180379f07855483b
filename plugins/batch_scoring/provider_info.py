"""Provider metadata: makes the `azure_ml` connection type known to Airflow, with its own form.

Airflow reads it through the `apache_airflow_provider` entry point of this project's
package (`pip install -e .`, done by `make setup`). The form is declarative (`conn-fields`,
`ui-field-behaviour`), so the API server shows it without importing the hook.
"""

from __future__ import annotations

PACKAGE_NAME = "monthly-batch-scoring"
CONNECTION_TYPE = "azure_ml"


def _text(label: str, description: str, *, secret: bool = False) -> dict:
    schema = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "description": description, "schema": schema}


def get_provider_info() -> dict:
    return {
        "package-name": PACKAGE_NAME,
        "name": "Monthly batch scoring",
        "description": "Azure ML (SDK v2) hook, operators and trigger for the monthly image-scoring DAG, with an "
                       "embedded local backend.",
        "versions": ["0.1.0"],
        "connection-types": [{
            "connection-type": CONNECTION_TYPE,
            "hook-class-name": "batch_scoring.hooks.azure_ml.AzureMLHook",
            "hook-name": "Azure ML (batch scoring)",
            "conn-fields": {
                "subscription_id": _text("Subscription ID", "The workspace's Azure subscription."),
                "resource_group": _text("Resource group", "The workspace's resource group."),
                "workspace_name": _text("Workspace name", "The Azure ML workspace."),
                "tenant_id": _text("Tenant ID", "Required with a service principal (login and password)."),
                "managed_identity_client_id": _text(
                    "Managed identity client ID", "A user-assigned identity for DefaultAzureCredential (optional)."),
                "environment": _text("Job environment", "A registered environment, azureml:<name>:<version> "
                                     "(optional; default: built from scoring/environment)."),
                "backend": _text("Backend", "'local' for the embedded default; empty for an Azure ML workspace."),
                "workspace_dir": _text("Local workspace folder", "Embedded default only."),
                "wasb_conn_id": _text("Blob store connection", "Embedded default only (default wasb_default)."),
                "job_page_url": _text("Job page URL prefix", "Embedded default only: where job links point, e.g. "
                                      "http://127.0.0.1:8080/batch-scoring/jobs."),
            },
            "ui-field-behaviour": {
                "hidden-fields": ["host", "schema", "port"],
                "relabeling": {"login": "Client ID (service principal)", "password": "Client secret"},
                "placeholders": {"login": "empty: DefaultAzureCredential", "password": "from your secret store"},
            },
        }],
    }
