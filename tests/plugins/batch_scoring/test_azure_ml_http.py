"""The Azure ML backend through the real azure-ai-ml client, answered at the HTTP boundary by a local fake:
serialization, long-running operations and error mapping are the SDK's own (tests/azure_ml_http_fake.py)."""

import json

import pytest
from azure.core.exceptions import HttpResponseError

from azure_ml_http_fake import WS, FakeWorkspace, error, ml_client
from batch_scoring.backends.azure_ml import AzureMLBackend, NodeSize, for_compute
from batch_scoring.backends.base import BackendError, ComputeSpec, DataAsset, JobStatus
from scoring.job_settings import JobSettings


@pytest.fixture
def workspace():
    return FakeWorkspace()


@pytest.fixture
def backend(workspace):
    return AzureMLBackend(ml_client(workspace))


def test_a_job_reads_back_with_its_plain_state_tags_and_studio_link(workspace, backend):
    workspace.add_job("monthly-batch-scoring-202610", "Running", tags={"run_id": "scheduled__202610"})
    info = backend.get_job("monthly-batch-scoring-202610")
    assert info.status == "Running" and type(info.status) is str  # the service's word, not the SDK's enum
    assert f"{info.status}" == "Running"
    assert info.tags == {"run_id": "scheduled__202610"}
    assert info.url.startswith("https://ml.azure.com/runs/monthly-batch-scoring-202610")


def test_a_missing_job_is_a_404_the_backend_names(backend):
    with pytest.raises(BackendError, match="no job named 'nope' in the workspace"):
        backend.get_job("nope")


def test_attempts_are_probed_until_the_first_404(workspace, backend):
    workspace.add_job("m", "Failed")
    workspace.add_job("m-r1", "Canceled")
    workspace.add_job("m-r3", "Running")  # not reached: attempts are consecutive
    assert [(info.name, info.status) for info in backend.job_attempts("m")] == [("m", "Failed"), ("m-r1", "Canceled")]
    probed = [path.rsplit("/", 1)[1] for method, path, _ in workspace.requests if method == "GET"]
    assert probed == ["m", "m-r1", "m-r2"]


def test_cancel_without_waiting_returns_while_the_cancel_is_still_in_progress(workspace, backend):
    workspace.add_job("m", "Running")
    # The service takes its time: the operation stays in progress (the SDK's poller thread keeps asking).
    workspace.overrides[("GET", f"{WS}/operationResults/cancel-m")] = (202, {"status": "InProgress"},
                                                                       {"Retry-After": "30"})
    assert backend.cancel_job("m", wait=False).status == JobStatus.CANCEL_REQUESTED
    assert ("POST", f"{WS}/jobs/m/cancel", None) in workspace.requests
    assert workspace.jobs["m"]["properties"]["status"] == "CancelRequested"  # returned before the cancel ended


def test_cancel_that_waits_follows_the_long_running_operation_to_the_end(workspace, backend):
    workspace.add_job("m", "Running")
    assert backend.cancel_job("m").status == "Canceled"
    assert ("GET", f"{WS}/operationResults/cancel-m", None) in workspace.requests


def test_a_finished_job_is_not_cancelled(workspace, backend):
    workspace.add_job("m", "Completed")
    assert backend.cancel_job("m").status == "Completed"
    assert not any(method == "POST" for method, _, _ in workspace.requests)


def test_the_clusters_size_from_the_service_resolves_auto_workers_and_device(workspace, backend):
    workspace.add_compute("gpu-cluster")
    node = backend._node_size("gpu-cluster")
    assert node == NodeSize("STANDARD_NC4AS_T4_V3", cores=4, gpus=1, memory_gb=28.0)
    settings = for_compute(JobSettings(), node)
    assert (settings.device, settings.max_concurrency_per_instance) == ("cuda", 4)


def test_a_cluster_whose_provisioning_failed_is_refused_in_one_line(workspace, backend):
    workspace.add_compute("gpu-cluster", state="Failed",
                          errors=[{"error": {"code": "QuotaExceeded", "message": "0 of 4 cores available"}}])
    with pytest.raises(BackendError) as caught:
        backend.ensure_compute(ComputeSpec(name="gpu-cluster"))
    assert str(caught.value).startswith("compute 'gpu-cluster' is in provisioning state Failed: QuotaExceeded;")


def test_a_healthy_cluster_is_reused_as_it_is(workspace, backend):
    workspace.add_compute("gpu-cluster")
    summary = backend.ensure_compute(ComputeSpec(name="gpu-cluster"))
    assert summary["type"] == "amlcompute" and summary["provisioning_state"] == "Succeeded"
    assert not any(method == "PUT" for method, _, _ in workspace.requests)


def test_a_month_is_registered_once_as_a_uri_folder_on_its_datastore_path(workspace, backend):
    asset = DataAsset("monthly-images", "202610", "azureml://datastores/images/paths/202610/")
    backend.register_data_asset(asset)
    puts = [body for method, _, body in workspace.requests if method == "PUT"]
    assert len(puts) == 1
    assert puts[0]["properties"]["dataType"] == "uri_folder"
    assert puts[0]["properties"]["dataUri"] == "azureml://datastores/images/paths/202610/"
    backend.register_data_asset(asset)  # the same month again: found, not written
    assert sum(method == "PUT" for method, _, _ in workspace.requests) == 1


def test_a_refusal_with_an_error_body_reaches_the_caller_with_the_services_message(workspace, backend):
    path = f"{WS}/data/monthly-images/versions/202610"
    workspace.overrides[("PUT", path)] = error(400, "UserError", "Datastore images was not found in workspace")
    with pytest.raises(HttpResponseError) as caught:
        backend.register_data_asset(DataAsset("monthly-images", "202610", "azureml://datastores/images/paths/202610/"))
    assert caught.value.status_code == 400
    assert "Datastore images was not found in workspace" in str(caught.value)

