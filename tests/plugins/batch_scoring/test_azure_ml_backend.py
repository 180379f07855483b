"""The Azure ML backend: the pipeline job it builds (validated offline by the SDK) and its workspace calls."""

from pathlib import Path

import pytest
import yaml


from batch_scoring.backends.azure_ml import (
    ENVIRONMENT_FILE,
    AzureMLBackend,
    build_pipeline_job,
    scoring_environment,
    stage_code,
)
from batch_scoring.backends.base import BackendError, ComputeSpec, DataAsset, ScoringJobSpec
from fake_ml_client import FakeMLClient
from scoring.job_settings import JobSettings

SETTINGS = JobSettings(mini_batch_size=10, mini_batch_error_threshold=3, error_threshold=25, max_retries=4,
                       timeout=90, instance_count=2, max_concurrency_per_instance=3, logging_level="DEBUG")
SPEC = ScoringJobSpec(name="monthly-batch-scoring-202610", experiment="monthly-batch-scoring", month="202610",
                      data_asset_name="monthly-images", data_asset_version="202610", model_name="shapes-classifier",
                      model_version="1", compute="gpu-cluster", settings=SETTINGS, tags={"month": "202610"})


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    return build_pipeline_job(SPEC, code_dir=stage_code(tmp_path_factory.mktemp("code")),
                              environment=scoring_environment())


def test_the_built_job_passes_the_sdks_own_validation(job):
    result = job._validate()
    assert result.passed, result.error_messages


def test_the_parallel_step_carries_every_job_setting(job):
    document = yaml.safe_load(job._to_yaml())
    step = document["jobs"]["score_images"]
    assert step["type"] == "parallel"
    assert step["mini_batch_size"] == "10"
    assert step["mini_batch_error_threshold"] == 3
    # The service counts a lost mini-batch as all its files: the merge judges error_threshold per file instead.
    assert step["error_threshold"] == -1
    assert step["outputs"]["rows"]["path"] == "azureml://datastores/${{default_datastore}}/paths/${{name}}/rows/"
    assert step["outputs"]["rows"]["type"] == "uri_folder"
    assert step["retry_settings"] == {"max_retries": 4, "timeout": 90}
    assert step["resources"]["instance_count"] == 2
    assert step["max_concurrency_per_instance"] == 3
    assert step["logging_level"] == "DEBUG"
    assert step["input_data"] == "${{inputs.images}}"
    task = step["task"]
    assert task["entry_script"] == "scoring/entry.py"
    assert task["append_row_to"] == "${{outputs.rows}}"
    assert "--month 202610" in task["program_arguments"]
    assert "--model_dir ${{inputs.model}}" in task["program_arguments"]


def test_the_merge_step_follows_the_parallel_step_and_enforces_the_threshold(job):
    document = yaml.safe_load(job._to_yaml())
    merge = document["jobs"]["merged"]
    assert merge["inputs"]["rows"]["path"] == "${{parent.jobs.score_images.outputs.rows}}"
    assert "python -m scoring.merge" in merge["component"]["command"]
    assert "--error_threshold 25" in merge["component"]["command"]
    assert document["outputs"]["results"]["type"] == "uri_folder"


def test_the_merge_writes_to_local_disk_and_no_step_reuses_a_cached_output(job):
    document = yaml.safe_load(job._to_yaml())
    # Upload mode: the merge's renames happen on local disk, not on a blob-backed mount.
    assert document["jobs"]["merged"]["outputs"]["results"] == "${{parent.outputs.results}}"
    assert document["outputs"]["results"]["mode"] == "upload"
    # A resubmitted attempt, or a month whose blobs changed under the same asset version, is scored anew.
    assert document["settings"]["force_rerun"] is True


def test_the_scoring_code_is_found_by_import_not_by_a_path_beside_the_plugin():
    import scoring

    from batch_scoring.backends.azure_ml import SCORING_PACKAGE

    assert SCORING_PACKAGE == Path(scoring.__file__).resolve().parent


def test_the_month_asset_and_model_are_the_pipeline_inputs(job):
    document = yaml.safe_load(job._to_yaml())
    assert document["inputs"]["images"]["path"] == "azureml:monthly-images:202610"
    assert document["inputs"]["model"]["path"] == "azureml:shapes-classifier:1"
    assert document["settings"]["default_compute"] == "azureml:gpu-cluster"
    assert job.name == "monthly-batch-scoring-202610"


def test_the_code_folder_holds_only_the_scoring_package(tmp_path):
    code = stage_code(tmp_path)
    assert sorted(p.name for p in code.iterdir()) == ["scoring"]
    assert (code / "scoring" / "entry.py").is_file() and (code / "scoring" / "merge.py").is_file()


def test_a_cluster_whose_provisioning_failed_is_refused_with_the_services_reason():
    from types import SimpleNamespace

    client = FakeMLClient()
    client.compute.computes["gpu-cluster"] = SimpleNamespace(
        type="amlcompute", name="gpu-cluster", size="Standard_NC4as_T4_v3", provisioning_state="Failed",
        provisioning_errors="QuotaExceeded: Standard NCASv3_T4 family, 0 of 4 cores available")
    with pytest.raises(BackendError) as caught:
        AzureMLBackend(client).ensure_compute(ComputeSpec(name="gpu-cluster"))
    assert str(caught.value) == (
        "compute 'gpu-cluster' is in provisioning state Failed: QuotaExceeded: Standard NCASv3_T4 family, 0 of 4 "
        "cores available; fix or delete the cluster in the Studio (Compute), or pick another compute name")
    client.compute.computes["gpu-cluster"].provisioning_state = "Succeeded"
    assert AzureMLBackend(client).ensure_compute(ComputeSpec(name="gpu-cluster"))["provisioning_state"] == "Succeeded"


def test_compute_of_another_type_is_a_clear_error():
    client = FakeMLClient()
    client.compute.computes["gpu-cluster"] = type("Instance", (), {"type": "computeinstance", "name": "gpu-cluster"})()
    with pytest.raises(BackendError, match="exists with type 'computeinstance'"):
        AzureMLBackend(client).ensure_compute(ComputeSpec(name="gpu-cluster"))


def test_registering_a_month_twice_is_a_no_op_and_a_different_path_an_error():
    client = FakeMLClient()
    backend = AzureMLBackend(client)
    asset = DataAsset("monthly-images", "202610", "azureml://datastores/images/paths/202610/")
    backend.register_data_asset(asset)
    backend.register_data_asset(asset)
    assert len(client.data.assets) == 1
    with pytest.raises(BackendError, match="already registered with path"):
        backend.register_data_asset(DataAsset("monthly-images", "202610", "azureml://datastores/other/paths/202610/"))


def test_failed_job_reports_the_services_error():
    client = FakeMLClient()
    backend = AzureMLBackend(client)
    backend.submit_job(SPEC)
    client.jobs.set_status(SPEC.name, "Failed", error="Out of quota\nfor NC4as_T4_v3")
    info = backend.get_job(SPEC.name)
    assert info.status == "Failed" and info.error == "UserError: Out of quota for NC4as_T4_v3"
    assert info.url == f"https://ml.azure.com/runs/{SPEC.name}"


def test_a_failed_pipeline_reports_its_failed_steps_reason_not_only_that_a_step_failed():
    client = FakeMLClient()
    backend = AzureMLBackend(client)
    backend.submit_job(SPEC)
    client.jobs.add_step(SPEC.name, "step-score", "Completed", display_name="score images 202610")
    client.jobs.add_step(SPEC.name, "step-merge", "Failed", display_name="merge rows 202610",
                         error="merge failed: 64 of 900 items failed, above error_threshold=50")
    client.jobs.set_status(SPEC.name, "Failed", error="Pipeline has some failed steps. See child run for details.")
    assert backend.get_job(SPEC.name).error == ("step merge rows 202610 failed: UserError: merge failed: 64 of 900 "
                                                "items failed, above error_threshold=50")


def test_attempts_are_probed_in_order():
    client = FakeMLClient()
    backend = AzureMLBackend(client)
    assert backend.job_attempts("m-202610") == []
    backend.submit_job(ScoringJobSpec(**{**SPEC.__dict__, "name": "m-202610"}))
    backend.submit_job(ScoringJobSpec(**{**SPEC.__dict__, "name": "m-202610-r1"}))
    assert [info.name for info in backend.job_attempts("m-202610")] == ["m-202610", "m-202610-r1"]


def test_outputs_are_downloaded_only_from_a_completed_job(tmp_path):
    client = FakeMLClient()
    backend = AzureMLBackend(client)
    backend.submit_job(SPEC)
    with pytest.raises(BackendError, match="not Completed"):
        backend.download_outputs(SPEC.name, tmp_path)
    client.jobs.set_status(SPEC.name, "Completed")
    client.jobs.outputs[SPEC.name] = {"predictions.csv": "image\n", "errors.csv": "image\n"}
    folder = backend.download_outputs(SPEC.name, tmp_path)
    assert (folder / "predictions.csv").read_text() == "image\n"


def _program_arguments(job) -> list[str]:
    import shlex

    return shlex.split(yaml.safe_load(job._to_yaml())["jobs"]["score_images"]["task"]["program_arguments"])


def test_the_parallel_step_carries_the_scoring_profile(job):
    arguments = _program_arguments(job)
    assert arguments[arguments.index("--month") + 1] == "202610"
    profile = arguments[arguments.index("--device"):]
    assert profile == SETTINGS.program_arguments()
    assert "--precision" in profile and "--channels_last" in profile and "--decode_threads" in profile


@pytest.mark.parametrize("size, device, workers", [
    ("Standard_NC4as_T4_v3", "cuda", 4),  # a GPU size: CUDA, so a node without it fails at init(); a worker per core
    ("Standard_D16s_v3", "auto", 16),
    ("Standard_F2s_v2", "auto", 2),  # 4 GB: at most one worker per 2 GB
    ("Standard_NV_unlisted", "cuda", 2),  # not in the size list: the name says GPU; workers fall back to 2
])
def test_auto_settings_resolve_for_the_clusters_vm_size(size, device, workers):
    from azure.ai.ml.entities import AmlCompute

    client = FakeMLClient()
    client.compute.computes["cluster"] = AmlCompute(name="cluster", size=size)
    auto = JobSettings()
    assert (auto.device, auto.max_concurrency_per_instance) == ("auto", 0)
    AzureMLBackend(client).submit_job(ScoringJobSpec(**{**SPEC.__dict__, "compute": "cluster", "settings": auto}))
    submitted = client.jobs.jobs[SPEC.name].submitted
    arguments = _program_arguments(submitted)
    assert arguments[arguments.index("--device") + 1] == device
    assert arguments[arguments.index("--max_concurrency_per_instance") + 1] == str(workers)
    assert yaml.safe_load(submitted._to_yaml())["jobs"]["score_images"]["max_concurrency_per_instance"] == workers


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_every_allowed_logging_level_builds_a_job_the_sdk_accepts(tmp_path, level):
    import dataclasses

    spec = dataclasses.replace(SPEC, settings=dataclasses.replace(SETTINGS, logging_level=level))
    built = build_pipeline_job(spec, code_dir=stage_code(tmp_path), environment=scoring_environment())
    result = built._validate()
    assert result.passed, result.error_messages
    assert yaml.safe_load(built._to_yaml())["jobs"]["score_images"]["logging_level"] == level


def test_the_sdk_itself_refuses_what_the_settings_refuse(tmp_path):
    """The reason ERROR is not offered: azure-ai-ml's parallel schema accepts DEBUG, INFO and WARNING only."""
    from azure.ai.ml.parallel import RunFunction, parallel_run_function

    step = parallel_run_function(
        name="probe", inputs={}, outputs={}, input_data="x", mini_batch_size="1", logging_level="ERROR",
        task=RunFunction(code=str(stage_code(tmp_path)), entry_script="scoring/entry.py",
                         environment=scoring_environment()))
    with pytest.raises(Exception, match="ERROR"):
        step.component._to_dict()


@pytest.mark.parametrize("refusal", ["exists", "plain_400"])
def test_any_refused_submit_of_a_name_that_now_exists_is_a_conflict_to_reattach_to(refusal, monkeypatch):
    from azure.core.exceptions import HttpResponseError, ResourceExistsError

    from batch_scoring.backends.base import JobAlreadyExists
    from fake_ml_client import FakeJob

    client = FakeMLClient()

    def refuse(job, experiment_name=None):
        client.jobs.jobs[job.name] = FakeJob(job.name, "Running", f"https://ml.azure.com/runs/{job.name}")
        if refusal == "exists":
            raise ResourceExistsError("job exists")
        answer = HttpResponseError(message="UserError: A job with this name already exists")
        answer.status_code = 400
        raise answer

    monkeypatch.setattr(client.jobs, "create_or_update", refuse)
    with pytest.raises(JobAlreadyExists):
        AzureMLBackend(client).submit_job(SPEC)


def test_a_refused_submit_with_no_job_behind_it_is_the_services_error(monkeypatch):
    from azure.core.exceptions import HttpResponseError

    client = FakeMLClient()

    def refuse(job, experiment_name=None):
        answer = HttpResponseError(message="UserError: compute gpu-cluster not found")
        answer.status_code = 400
        raise answer

    monkeypatch.setattr(client.jobs, "create_or_update", refuse)
    with pytest.raises(HttpResponseError, match="compute gpu-cluster not found"):
        AzureMLBackend(client).submit_job(SPEC)


def test_the_built_job_runs_both_steps_in_the_environment_file_declares(tmp_path):
    built = build_pipeline_job(SPEC, code_dir=stage_code(tmp_path), environment=scoring_environment())
    declared = yaml.safe_load(ENVIRONMENT_FILE.read_text())
    for step in ("score_images", "merged"):
        environment = built.jobs[step].component.task.environment if step == "score_images" \
            else built.jobs[step].component.environment
        assert environment.image == declared["image"]
        pip = environment.conda_file["dependencies"][-1]["pip"]
        assert "torch==2.14.1+cu126" in pip and "--extra-index-url https://download.pytorch.org/whl/cu126" in pip
