"""The hook reads the connection and builds the backend; no secret reaches a message."""

import json

import pytest

from batch_scoring.backends.local import LocalBackend
from batch_scoring.hooks.azure_ml import AzureMLHook

SECRET = "s3cr3t-Cl1ent-Secret-value"


def test_local_backend_from_the_connection(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_AML_LOCAL", json.dumps({
        "conn_type": "azure_ml", "extra": {"backend": "local", "workspace_dir": str(tmp_path), "wasb_conn_id": "blobs"}}))
    monkeypatch.setenv("AIRFLOW_CONN_BLOBS", json.dumps({
        "conn_type": "wasb", "extra": {"connection_string": "UseDevelopmentStorage=true"}}))
    backend = AzureMLHook("aml_local").backend
    assert isinstance(backend, LocalBackend) and backend.workspace.root == tmp_path.resolve()


def test_missing_workspace_fields_are_named_and_the_secret_is_not(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AML_CLOUD", json.dumps({
        "conn_type": "azure_ml", "login": "client-id", "password": SECRET,
        "extra": {"subscription_id": "sub", "tenant_id": "tenant"}}))
    with pytest.raises(ValueError) as caught:
        AzureMLHook("aml_cloud").backend
    assert "resource_group" in str(caught.value) and "workspace_name" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_service_principal_credentials_when_the_connection_has_them(monkeypatch):
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    monkeypatch.setenv("AIRFLOW_CONN_AML_SP", json.dumps({
        "conn_type": "azure_ml", "login": "client-id", "password": SECRET,
        "extra": {"subscription_id": "s", "resource_group": "r", "workspace_name": "w", "tenant_id": "t"}}))
    monkeypatch.setenv("AIRFLOW_CONN_AML_DEFAULT_CRED", json.dumps({
        "conn_type": "azure_ml", "extra": {"subscription_id": "s", "resource_group": "r", "workspace_name": "w"}}))
    assert isinstance(AzureMLHook("aml_sp")._credential(), ClientSecretCredential)
    assert isinstance(AzureMLHook("aml_default_cred")._credential(), DefaultAzureCredential)
    client = AzureMLHook("aml_sp")._ml_client()
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == ("s", "r", "w")
    assert SECRET not in repr(client) and SECRET not in repr(AzureMLHook("aml_sp")._credential())


@pytest.mark.parametrize("connection, missing", [
    ({"login": "client-id", "password": SECRET}, "extra tenant_id"),
    ({"login": "client-id"}, "password (client secret), extra tenant_id"),
    ({"password": SECRET, "extra": {"tenant_id": "t"}}, "login (client id)"),
])
def test_a_half_set_service_principal_is_refused_in_one_line(monkeypatch, connection, missing):
    extra = {"subscription_id": "s", "resource_group": "r", "workspace_name": "w", **connection.pop("extra", {})}
    monkeypatch.setenv("AIRFLOW_CONN_AML_HALF", json.dumps({"conn_type": "azure_ml", **connection, "extra": extra}))
    with pytest.raises(ValueError) as caught:
        AzureMLHook("aml_half")._credential()
    message = str(caught.value)
    assert message == (f"connection 'aml_half' sets a service principal but lacks {missing}; set them all, or none "
                       "to use DefaultAzureCredential")
    assert SECRET not in message


def test_operators_trigger_and_publish_step_use_the_hooks_verbs_not_its_backend():
    import inspect

    import batch_scoring.operators.azure_ml as operators
    import batch_scoring.publish_step as publish_step
    import batch_scoring.triggers.azure_ml as triggers

    for module in (operators, triggers, publish_step):
        assert ".backend." not in inspect.getsource(module), module.__name__
    verbs = {"ensure_compute", "register_data_asset", "submit_job", "get_job", "job_attempts", "cancel_job",
             "download_outputs"}
    assert verbs <= set(vars(AzureMLHook))


def test_the_connection_type_is_a_provider_with_a_form_airflow_accepts():
    import importlib.metadata
    from pathlib import Path

    import jsonschema

    import airflow
    from batch_scoring.provider_info import get_provider_info

    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    (connection,) = info["connection-types"]
    assert connection["connection-type"] == AzureMLHook.conn_type
    assert connection["hook-class-name"] == f"{AzureMLHook.__module__}.{AzureMLHook.__qualname__}"
    # `make setup` installs the entry point Airflow discovers providers by.
    entry_points = importlib.metadata.entry_points(group="apache_airflow_provider")
    assert "batch_scoring.provider_info:get_provider_info" in {entry.value for entry in entry_points}


def test_extras_written_by_the_form_are_read_like_hand_written_ones(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AML_FORM", json.dumps({"conn_type": "azure_ml", "extra": {
        "extra__azure_ml__subscription_id": "s", "extra__azure_ml__resource_group": "r", "workspace_name": "w",
        "extra__azure_ml__tenant_id": ""}}))
    hook = AzureMLHook("aml_form")
    assert hook.extras == {"subscription_id": "s", "resource_group": "r", "workspace_name": "w"}
