"""The Azure ML backend through the real azure-ai-ml client, answered at the HTTP boundary by a local fake:
serialization, long-running operations and error mapping are the SDK's own (tests/azure_ml_http_fake.py)."""

import json
import socket

import pytest
import yaml
from azure.core.exceptions import HttpResponseError

from azure_ml_http_fake import (
    DATASTORE,
    DATASTORE_CONTAINER,
    HISTORY,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    WS,
    FakeWorkspace,
    error,
    ml_client,
)
from batch_scoring.backends.azure_ml import ENVIRONMENT_FILE, AzureMLBackend, NodeSize, for_compute
from batch_scoring.backends.base import BackendError, ComputeSpec, DataAsset, JobStatus, ScoringJobSpec
from scoring.job_settings import JobSettings

SUBMIT_SPEC = ScoringJobSpec(
    name="monthly-batch-scoring-202610", experiment="monthly-batch-scoring", month="202610",
    data_asset_name="monthly-images", data_asset_version="202610", model_name="shapes-classifier", model_version="1",
    compute="gpu-cluster", tags={"month": "202610"},
    settings=JobSettings(mini_batch_size=10, mini_batch_error_threshold=3, error_threshold=25, max_retries=4,
                         logging_level="DEBUG"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """These tests run without a network: any connection beyond this machine (telemetry, a host the fake does
    not answer, a token endpoint) is recorded and fails the test, even where the SDK would swallow the error."""
    reached: list = []
    connect = socket.socket.connect

    def local_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            reached.append(address)
            raise ConnectionRefusedError(f"no network in this test: {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    yield
    assert not reached, f"reached out to {reached}"


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


def test_a_model_version_the_registry_does_not_hold_is_refused_in_one_line(workspace, backend):
    from batch_scoring.backends.base import ModelRefused

    with pytest.raises(ModelRefused) as caught:
        backend.describe_model("shapes-classifier", "7")
    assert str(caught.value).startswith("model shapes-classifier:7 is not registered in the workspace")
    assert ("GET", f"{WS}/models/shapes-classifier/versions/7", None) in workspace.requests


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
    # What each of the node's 4 workers then runs with, on its 4 vCPUs and one T4: decoding inline (a core each),
    # one torch thread, pinned transfers, a batch fitted to its share of the GPU, the decoder probed at init().
    from scoring.device_profile import FIT_GPU, Capabilities, resolve

    t4_node = Capabilities(cpus=4, cpu_bf16=False, cuda_problem=None, cuda_name="Tesla T4")
    profile = resolve(settings, t4_node, {"fp16": 0.999})
    assert (profile.decode_threads, profile.torch_threads, profile.pin_memory, profile.batch_size,
            profile.decoder, profile.precision) == (0, 1, True, FIT_GPU, "auto", "fp16")
    assert "--decoder auto" in " ".join(settings.program_arguments())


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


def test_a_missing_cluster_is_created_and_followed_to_the_end_of_its_provisioning(workspace, backend):
    spec = ComputeSpec(name="gpu-cluster", max_instances=3)
    summary = backend.ensure_compute(spec)
    puts = [body for method, path, body in workspace.requests if method == "PUT" and path.endswith("/gpu-cluster")]
    assert len(puts) == 1
    cluster = puts[0]["properties"]
    assert cluster["computeType"] == "AmlCompute"
    assert cluster["properties"]["vmSize"].lower() == spec.vm_size.lower()
    assert cluster["properties"]["vmPriority"] == "LowPriority"
    assert cluster["properties"]["scaleSettings"]["minNodeCount"] == spec.min_instances
    assert cluster["properties"]["scaleSettings"]["maxNodeCount"] == 3
    # The long-running operation was followed (one "InProgress", then "Succeeded"), then the cluster read back.
    assert workspace.compute_polls["gpu-cluster"] == 2
    assert summary["provisioning_state"] == "Succeeded" and summary["max_instances"] == 3
    backend.ensure_compute(spec)  # next month: found, not created again
    assert sum(method == "PUT" for method, _, _ in workspace.requests) == 1


def test_a_cluster_created_into_a_failed_state_is_refused(workspace, backend):
    workspace.created_compute_state = "Failed"
    with pytest.raises(BackendError, match=r"^compute 'gpu-cluster' is in provisioning state Failed"):
        backend.ensure_compute(ComputeSpec(name="gpu-cluster"))


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



# Submission: through the hook as the submit operator calls it, code uploaded to a real blob store (Azurite).

@pytest.fixture
def submitting(workspace, azurite, monkeypatch):
    """The hook of an `azure_ml` connection whose `MLClient` talks to the fake workspace; code goes to Azurite."""
    import azure.ai.ml

    from azure_ml_http_fake import FakeCredential, transport
    from batch_scoring.hooks.azure_ml import AzureMLHook

    workspace.blob_store = azurite
    workspace.add_compute("gpu-cluster")
    credential = FakeCredential()
    wired = transport(workspace)

    class WiredMLClient(azure.ai.ml.MLClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, transport=wired, **kwargs)

    monkeypatch.setattr(azure.ai.ml, "MLClient", WiredMLClient)
    monkeypatch.setattr(AzureMLHook, "_credential", lambda self: credential)
    monkeypatch.setenv("AIRFLOW_CONN_AML_HTTP", json.dumps({"conn_type": "azure_ml", "extra": {
        "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP, "workspace_name": WORKSPACE}}))
    return AzureMLHook(azure_ml_conn_id="aml_http"), credential


def _put(workspace, fragment):
    return [(path, body) for method, path, body in workspace.requests if method == "PUT" and fragment in path]


def test_a_submission_uploads_the_code_builds_the_environment_and_creates_the_pipeline(
        workspace, submitting, azurite, capfd, caplog):
    from azure.storage.blob import BlobServiceClient

    hook, credential = submitting
    info = hook.submit_job(SUBMIT_SPEC)

    assert (info.name, info.status) == ("monthly-batch-scoring-202610", "NotStarted")
    assert info.url.endswith("&tid=tenant-0001")  # the SDK appends the tenant, so Studio opens in the right one
    # A pipeline job is submitted with a token for Azure ML's own audience, not only the management API's.
    assert "https://ml.azure.com/.default" in credential.scopes

    [(_, job)] = _put(workspace, "/jobs/")
    properties = job["properties"]
    assert properties["jobType"] == "Pipeline" and properties["settings"]["force_rerun"] is True
    assert properties["inputs"]["images"]["uri"].endswith("/data/monthly-images/versions/202610")
    assert properties["outputs"]["results"]["mode"] == "Upload"
    score = properties["jobs"]["score_images"]
    assert (score["type"], score["mini_batch_size"], score["logging_level"]) == ("parallel", 10, "DEBUG")
    assert score["retry_settings"]["max_retries"] == 4

    components = {body["properties"]["componentSpec"]["type"]: body["properties"]["componentSpec"]
                  for _, body in _put(workspace, "/components/")}
    task = components["parallel"]["task"]
    assert task["entry_script"] == "scoring/entry.py"
    assert "--device cuda" in task["program_arguments"]  # the T4 cluster's size resolved `auto`
    # error_threshold is the merge's, per file: the service would count a lost mini-batch as all of its files.
    assert (components["parallel"]["error_threshold"], components["parallel"]["mini_batch_error_threshold"]) == (-1, 3)
    # The rows are a folder at a datastore path of their own, where the runtime creates its appended-rows file; the
    # merge mounts that folder and reads every file in it.
    assert score["outputs"]["rows"] == {"uri": "azureml://datastores/${{default_datastore}}/paths/${{name}}/rows/",
                                        "job_output_type": "uri_folder", "mode": "ReadWriteMount"}
    assert properties["jobs"]["merged"]["inputs"]["rows"]["value"] == "${{parent.jobs.score_images.outputs.rows}}"
    merge_inputs = components["command"]["inputs"]
    assert (merge_inputs["rows"]["type"], merge_inputs["images"]["type"]) == ("uri_folder", "uri_folder")
    assert components["parallel"]["outputs"]["rows"]["type"] == "uri_folder"

    [(_, environment)] = {path: body for path, body in _put(workspace, "/environments/")}.items()
    declared = yaml.safe_load(ENVIRONMENT_FILE.read_text())
    assert environment["properties"]["image"] == declared["image"]
    assert "torch==2.14.1+cu126" in environment["properties"]["condaFile"]

    # The code each step runs is in the blob store the service named: the scoring package, not the environment.
    code_uris = [body["properties"]["codeUri"] for _, body in _put(workspace, "/codes/")]
    assert code_uris and all(uri.startswith(azurite.blob_endpoint) for uri in code_uris)
    store = BlobServiceClient.from_connection_string(azurite.connection_string)
    for uri in code_uris:
        container, prefix = uri[len(azurite.blob_endpoint):].strip("/").split("/", 1)
        uploaded = {blob.name[len(prefix) + 1:] for blob in store.get_container_client(container).list_blobs(prefix)}
        assert {"scoring/entry.py", "scoring/merge.py", "scoring/job_settings.py"} <= uploaded
        assert not any(name.startswith("scoring/environment/") or "__pycache__" in name for name in uploaded)

    # The task log gets neither progress bars nor the terminal codes the SDK prints after each upload.
    out, err = capfd.readouterr()
    assert "Uploading" not in out + err and "\x1b[" not in out + err
    assert not any("Uploading" in record.getMessage() or "\x1b[" in record.getMessage() for record in caplog.records)


def test_a_name_taken_meanwhile_is_a_409_the_submit_turns_into_reattach(workspace, submitting):
    from batch_scoring.backends.base import JobAlreadyExists

    hook, _ = submitting
    workspace.add_job("monthly-batch-scoring-202610", "Running")
    with pytest.raises(JobAlreadyExists):
        hook.submit_job(SUBMIT_SPEC)
    assert [method for method, path, _ in workspace.requests if path.endswith("/jobs/monthly-batch-scoring-202610")] \
        == ["PUT", "GET"]


# After the job: its failure reason from run history, its outputs from the datastore (Azurite), as the SDK finds them.

@pytest.fixture
def finished(workspace, submitting, azurite, monkeypatch):
    from azure_ml_http_fake import route_storage_account_to

    route_storage_account_to(azurite, monkeypatch)
    return submitting[0]


def test_a_failed_jobs_reason_comes_from_its_run_details_in_one_line(workspace, finished):
    workspace.add_job("m", "Failed")
    workspace.run_errors["m"] = {"code": "UserError",
                                 "message": "mini_batch_error_threshold exceeded:\n  6 of 64 items failed"}
    info = finished.get_job("m")
    assert (info.status, info.error) == ("Failed", "UserError: mini_batch_error_threshold exceeded: 6 of 64 items failed")
    assert ("GET", f"{HISTORY}/runs/m/details", None) in workspace.requests  # found through the discovery URL


def test_a_completed_jobs_results_are_downloaded_from_the_datastore_the_service_names(workspace, finished, azurite,
                                                                                      tmp_path):
    from azure.storage.blob import BlobServiceClient

    workspace.add_job("m", "Completed")
    workspace.run_outputs["m"] = {"results": "azureml/m-run/results/"}
    store = BlobServiceClient.from_connection_string(azurite.connection_string)
    if not store.get_container_client(DATASTORE_CONTAINER).exists():
        store.create_container(DATASTORE_CONTAINER)
    for name, text in (("predictions.csv", "image,label\na.jpg,circle\n"), ("errors.csv", "image,error\n")):
        store.get_container_client(DATASTORE_CONTAINER).upload_blob(f"azureml/m-run/results/{name}", text,
                                                                     overwrite=True)

    folder = finished.download_outputs("m", tmp_path)

    assert folder == tmp_path / "named-outputs" / "results"
    assert (folder / "predictions.csv").read_text() == "image,label\na.jpg,circle\n"
    assert (folder / "errors.csv").is_file()
    assert any(method == "POST" and path == f"{HISTORY}/rundata" for method, path, _ in workspace.requests)
    assert ("POST", f"{WS}/datastores/{DATASTORE}/listSecrets") in {(m, p) for m, p, _ in workspace.requests}


def test_a_completed_job_without_predictions_is_refused_in_one_line(workspace, finished, azurite, tmp_path):
    workspace.add_job("m", "Completed")
    workspace.run_outputs["m"] = {"results": "azureml/m-empty/results/"}
    with pytest.raises(BackendError, match=r"^job 'm' output 'results' has no predictions.csv \(looked in .*\)$"):
        finished.download_outputs("m", tmp_path)


def test_outputs_of_a_job_that_has_not_completed_are_not_asked_for(workspace, finished, tmp_path):
    workspace.add_job("m", "Running")
    with pytest.raises(BackendError, match="job 'm' is Running, not Completed: it has no outputs to download"):
        finished.download_outputs("m", tmp_path)
    assert not any("/history/" in path for _, path, _ in workspace.requests)


def test_a_failed_pipelines_reason_is_its_failed_steps_own_error_with_the_step_named(workspace, backend):
    workspace.add_job("m", "Failed")
    workspace.run_errors["m"] = {"code": "UserError", "message": "Pipeline has failed child jobs. Failed nodes: "
                                                                "/merged."}
    workspace.add_step("m", "m-score", "Completed", display_name="score images 202610")
    workspace.add_step("m", "m-merge", "Failed", display_name="merge rows 202610",
                       error={"code": "UserError", "message": "merge failed: 64 of 900 items failed,\n above "
                                                              "error_threshold=50; nothing was written"})
    assert backend.get_job("m").error == ("step merge rows 202610 failed: UserError: merge failed: 64 of 900 items "
                                          "failed, above error_threshold=50; nothing was written")
    assert ("GET", f"{HISTORY}/runs/m/children", None) in workspace.requests


def test_a_failed_pipeline_without_a_failed_step_keeps_its_own_reason(workspace, backend):
    workspace.add_job("m", "Failed")
    workspace.run_errors["m"] = {"code": "ServiceError", "message": "the compute was deleted"}
    workspace.add_step("m", "m-score", "Canceled", display_name="score images 202610")
    assert backend.get_job("m").error == "ServiceError: the compute was deleted"


def test_a_cancelled_attempt_that_stays_cancel_requested_is_waited_for_before_the_next_one(
        workspace, submitting, monkeypatch, caplog):
    """The cancel operation answers done while the job reads CancelRequested for several more polls: the next
    attempt is submitted only once it reads Canceled, and never reattaches to the ending job."""
    import logging

    import batch_scoring.attempts as attempts
    from batch_scoring.attempts import ensure_job

    monkeypatch.setattr(attempts, "ENDING_POLL_S", 0.01)
    hook, _credential = submitting
    base = SUBMIT_SPEC.name
    workspace.add_job(base, "NotResponding", tags=dict(SUBMIT_SPEC.tags))
    workspace.cancel_lingers[base] = 3
    job = ensure_job(hook, SUBMIT_SPEC, logging.getLogger("test"))
    assert job.name == f"{base}-r1"
    assert workspace.jobs[base]["properties"]["status"] == "Canceled"
    reads = [index for index, (method, path, _) in enumerate(workspace.requests)
             if method == "GET" and path == f"{WS}/jobs/{base}"]
    [submitted] = [index for index, (method, path, _) in enumerate(workspace.requests)
                   if method == "PUT" and path == f"{WS}/jobs/{base}-r1"]
    assert workspace.cancel_lingers[base] < 0 and max(reads) < submitted  # read Canceled, then submitted
    assert f"job {base} is CancelRequested; waiting for it to end before the next attempt" in caplog.text


def test_a_long_queue_is_reported_with_the_clusters_allocation_errors(workspace, backend):
    """Missing quota: the cluster provisioned Succeeded (0 minimum nodes), the job sits Queued, and only the
    cluster's node allocation says why; the wait's warning carries it."""
    import time

    from batch_scoring.job_watch import JobWatch

    workspace.add_compute("gpu-cluster", allocation={
        "allocationState": "Resizing", "currentNodeCount": 0, "targetNodeCount": 1,
        "errors": [{"error": {"code": "ClusterCoreQuotaReached", "message": "Operation results in exceeding quota "
                                                                           "limits of Total Cluster Dedicated Regional "
                                                                           "vCPUs. Maximum allowed: 0"}}]})
    workspace.add_job("m", "Queued", settings={"default_compute": f"{WS}/computes/gpu-cluster"})
    info = backend.get_job("m")
    assert info.details["cluster"] == ("gpu-cluster allocation Resizing, 0 of 1 target nodes; "
                                       "ClusterCoreQuotaReached: Operation results in exceeding quota limits of "
                                       "Total Cluster Dedicated Regional vCPUs. Maximum allowed: 0")
    watch = JobWatch("m", end_time=time.time() + 3600, poll_interval=60, started=time.monotonic(),
                     queued_warning_s=0)
    verdict = watch.after(info, now=time.time(), monotonic=time.monotonic())
    assert verdict.event is None and verdict.warning.startswith("job m has been Queued for 0 min: the cluster ")
    assert verdict.warning.endswith("; the cluster reports: " + info.details["cluster"])


def test_a_running_job_costs_no_look_at_its_cluster(workspace, backend):
    workspace.add_compute("gpu-cluster")
    workspace.add_job("m", "Running", settings={"default_compute": f"{WS}/computes/gpu-cluster"})
    assert "cluster" not in backend.get_job("m").details
    assert not any(path.endswith("/computes/gpu-cluster") for _method, path, _ in workspace.requests)


# The model check before any compute: the registered model downloaded from the datastore (Azurite) and read.

def test_a_registered_model_folder_is_downloaded_and_described(workspace, finished, model_dir):
    files = {path.name: path.read_bytes() for path in sorted(model_dir.iterdir()) if path.is_file()}
    workspace.add_model("shapes-classifier", "3", files)
    description = finished.describe_model("shapes-classifier", "3")
    assert (description.name, description.version, description.format) == ("shapes-classifier", "3",
                                                                            "state_dict")
    from scoring.model import read_metadata

    assert description.file == "weights.pt" and description.labels == len(read_metadata(model_dir).labels)
    assert ("POST", f"{WS}/datastores/{DATASTORE}/listSecrets") in {(m, p) for m, p, _ in workspace.requests}


def test_a_registered_program_file_is_described_without_running_its_code(workspace, finished, tmp_path):
    from custom_models import save_program, trained_like

    program = save_program(trained_like(), tmp_path / "model.pt2")
    workspace.add_model("own-net", "1", {"model.pt2": program.read_bytes()})
    description = finished.describe_model("own-net", "1")
    assert (description.format, description.file, description.labels) == ("torch_export", "model.pt2", None)


def test_a_registered_pickled_model_is_refused_in_one_line_naming_the_import(workspace, finished, tmp_path):
    from batch_scoring.backends.base import ModelRefused
    from custom_models import save_pickled, trained_like

    pickled = save_pickled(trained_like(), tmp_path / "model.pt")
    workspace.add_model("legacy", "2", {"model.pt": pickled.read_bytes()})
    with pytest.raises(ModelRefused) as caught:
        finished.describe_model("legacy", "2")
    message = str(caught.value)
    assert message.startswith("model legacy:2: ") and "\n" not in message
    assert "python -m scoring import-model" in message
