"""A local stand-in for the Azure ML REST API under a real `MLClient`: the SDK's own serialization,
long-running operations and error mapping run; only the bytes on the wire are ours.

HTTP goes through azure-core's own `RequestsTransport`, over a `requests` session whose adapter
answers from `FakeWorkspace` instead of the network. Bodies follow the REST API's JSON shapes.
"""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import requests
import urllib3
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import RequestsTransport

SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "sub-0001", "rg-scoring", "ws-scoring"
WS = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
      f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}")
LOCATION = "westeurope"
# The workspace's data plane (run history, data URIs), found through its discovery URL as the SDK does.
DATA_PLANE = f"https://{LOCATION}.api.azureml.ms"
HISTORY, DATA = f"/history/v1.0{WS}", f"/data/v1.0{WS}"
# The default datastore: a container of the storage account that Azurite stands in for.
DATASTORE, DATASTORE_CONTAINER, STORAGE_ACCOUNT = "workspaceblobstore", "azureml-blobstore-0001", "devstoreaccount1"


TENANT = "tenant-0001"
EXPIRES = 4102444800


def _token_for(scopes) -> str:
    """An unsigned JWT with the audience the scope names: the SDK reads `aud` (pipeline submits) and `tid`."""
    def part(claims: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    audience = scopes[0].removesuffix("/.default") if scopes else ""
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'aud': audience, 'tid': TENANT, 'exp': EXPIRES})}.sig"


class FakeCredential:
    def __init__(self):
        self.scopes: list[str] = []  # every scope a token was asked for

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        return AccessToken(_token_for(scopes), EXPIRES)

    def get_token_info(self, *scopes, options=None):
        self.scopes.extend(scopes)
        return AccessTokenInfo(_token_for(scopes), EXPIRES)


def error(status: int, code: str, message: str) -> tuple[int, dict]:
    return status, {"error": {"code": code, "message": message}}


class FakeWorkspace:
    """Jobs, computes, data assets and VM sizes of one workspace, as the REST API returns them."""

    def __init__(self, blob_store=None):
        # Where code uploads go: a real blob store (Azurite), reached with a SAS as the service hands out.
        self.blob_store = blob_store
        self.jobs: dict[str, dict] = {}
        self.assets: dict[tuple[str, str, str], dict] = {}  # (kind, name, version) of codes, environments, components
        self.computes: dict[str, dict] = {}
        self.compute_polls: dict[str, int] = {}  # cluster being created -> status polls answered so far
        self.created_compute_state = "Succeeded"  # what a created cluster's provisioning ends in
        self.data: dict[tuple[str, str], dict] = {}
        self.sizes = [{"name": "Standard_NC4as_T4_v3", "family": "standardNCASv3_T4Family", "vCPUs": 4, "gpus": 1,
                       "memoryGB": 28.0, "lowPriorityCapable": True},
                      {"name": "Standard_D16s_v3", "family": "standardDSv3Family", "vCPUs": 16, "gpus": 0,
                       "memoryGB": 64.0, "lowPriorityCapable": True}]
        self.run_errors: dict[str, dict] = {}  # job name -> the error its run details carry
        self.steps: dict[str, list[dict]] = {}  # pipeline job name -> its child jobs, as run history lists them
        # job name -> how many more reads answer CancelRequested once its cancel operation has answered done:
        # the service promises no time for a cancelled job to reach Canceled.
        self.cancel_lingers: dict[str, int] = {}
        self.run_outputs: dict[str, dict[str, str]] = {}  # job name -> output name -> datastore path of its files
        self.requests: list[tuple[str, str, dict | None]] = []  # (method, path, JSON body)
        # (method, path) -> a canned answer: (status, body) or (status, body, headers)
        self.overrides: dict[tuple[str, str], tuple] = {}

    def add_job(self, name: str, status: str, **properties) -> None:
        self.jobs[name] = {
            "id": f"{WS}/jobs/{name}", "name": name, "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {"jobType": "Pipeline", "status": status, "experimentName": "monthly-batch-scoring",
                           "displayName": name, "tags": properties.pop("tags", {}), "jobs": {}, "inputs": {},
                           "outputs": {}, "settings": {},
                           "services": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{name}?wsid={WS}"}},
                           **properties},
        }

    def add_step(self, parent: str, name: str, status: str, *, display_name: str, error: dict | None = None) -> None:
        """A child job of pipeline `parent` (a step), with its own error in its run details when given."""
        self.steps.setdefault(parent, []).append({"runId": name, "parentRunId": parent, "rootRunId": parent,
                                                  "displayName": display_name, "status": status,
                                                  "experimentId": "monthly-batch-scoring"})
        if error:
            self.run_errors[name] = error

    def add_model(self, name: str, version: str, files: dict[str, bytes], *, model_type: str = "custom_model") -> str:
        """A registered model whose files lie in the default datastore (the blob store), as `az ml model create
        --path` leaves them: one file registers its own path, several a folder. Returns the datastore path."""
        from azure.storage.blob import BlobServiceClient

        prefix = f"LocalUpload/{name}-{version}"
        service = BlobServiceClient.from_connection_string(self.blob_store.connection_string)
        container = service.get_container_client(DATASTORE_CONTAINER)
        if not container.exists():
            container.create_container()
        for relative, data in files.items():
            container.upload_blob(f"{prefix}/{relative}", data, overwrite=True)
        path = f"{prefix}/{next(iter(files))}" if len(files) == 1 else prefix
        self.assets[("models", name, version)] = {
            "id": f"{WS}/models/{name}/versions/{version}", "name": version,
            "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
            "properties": {"modelType": model_type, "properties": {}, "tags": {}, "flavors": {},
                           "modelUri": f"azureml://subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/"
                                       f"workspaces/{WORKSPACE}/datastores/{DATASTORE}/paths/{path}"}}
        return path

    def _run_status(self, name: str) -> str | None:
        if name in self.jobs:
            return self.jobs[name]["properties"]["status"]
        return next((step["status"] for steps in self.steps.values() for step in steps if step["runId"] == name), None)

    def add_compute(self, name: str, *, state: str = "Succeeded", errors: list | None = None,
                    size: str = "STANDARD_NC4AS_T4_V3", allocation: dict | None = None) -> None:
        """`allocation`: the node allocation the cluster reports (allocationState, node counts, errors)."""
        self.computes[name] = {
            "id": f"{WS}/computes/{name}", "name": name, "location": LOCATION,
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "properties": {"computeType": "AmlCompute", "provisioningState": state,
                           "provisioningErrors": errors,
                           "properties": {"vmSize": size, "vmPriority": "LowPriority",
                                          "scaleSettings": {"maxNodeCount": 2, "minNodeCount": 0,
                                                            "nodeIdleTimeBeforeScaleDown": "PT120S"},
                                          **(allocation or {})}},
        }

    def _pending_upload(self, name: str, version: str) -> dict:
        """A temporary container for a code snapshot, with a write SAS: what `startPendingUpload` returns."""
        from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

        container = f"code-{name}-{version}".lower()[:63]
        url = f"{self.blob_store.blob_endpoint.rstrip('/')}/{container}"
        return {"blobReferenceForConsumption": {"blobUri": url, "storageAccountArmId": None,
                                                "credential": {"credentialType": "SAS",
                                                               "sasUri": f"{url}?{self._container_sas(container)}"}},
                "pendingUploadId": f"{name}-{version}", "pendingUploadType": "TemporaryBlobReference"}

    def _container_sas(self, container: str) -> str:
        """A SAS for one container of the blob store (created if missing), as the service hands them out."""
        from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

        service = BlobServiceClient.from_connection_string(self.blob_store.connection_string)
        if not service.get_container_client(container).exists():
            service.create_container(container)
        return generate_container_sas(service.account_name, container, account_key=service.credential.account_key,
                                      permission=ContainerSasPermissions(read=True, write=True, list=True, add=True,
                                                                         create=True),
                                      expiry=datetime.now(timezone.utc) + timedelta(hours=1))

    def _versioned_asset(self, method: str, kind: str, name: str, version: str, body: dict | None):
        key = (kind, name, version)
        if method == "PUT":
            self.assets[key] = {"id": f"{WS}/{kind}/{name}/versions/{version}", "name": version,
                                "type": f"Microsoft.MachineLearningServices/workspaces/{kind}/versions",
                                "properties": body["properties"]}
            return 201, self.assets[key], {}
        found = self.assets.get(key)
        return (200, found, {}) if found else (*error(404, "UserError", f"{kind} {name}:{version} not found"), {})

    def answer(self, method: str, path: str, body: dict | None, query: dict | None = None):
        self.requests.append((method, path, body))
        if (method, path) in self.overrides:
            status, payload, *headers = self.overrides[(method, path)]
            return status, payload, headers[0] if headers else {}
        if path == WS:
            return 200, {"id": WS, "name": WORKSPACE, "location": LOCATION,
                         "properties": {"discoveryUrl": f"{DATA_PLANE}/discovery", "workspaceId": "ws-id-0001"}}, {}
        if path == "/discovery":
            return 200, {"api": DATA_PLANE, "history": DATA_PLANE, "catalog": DATA_PLANE}, {}
        if match := re.fullmatch(re.escape(HISTORY) + r"/runs/([^/]+)/children", path):
            if match[1] not in self.jobs:
                return (*error(404, "UserError", f"run {match[1]} not found"), {})
            return 200, {"value": self.steps.get(match[1], [])}, {}
        if match := re.fullmatch(re.escape(HISTORY) + r"/runs/([^/]+)/details", path):
            if self._run_status(match[1]) is None:
                return (*error(404, "UserError", f"run {match[1]} not found"), {})
            return 200, {"runId": match[1], "status": self._run_status(match[1]),
                         **({"error": {"error": self.run_errors[match[1]]}} if match[1] in self.run_errors else {})}, {}
        if path == f"{HISTORY}/rundata":
            run = body["runId"]
            outputs = {name: {"assetId": f"azureml://locations/{LOCATION}/workspaces/ws-id-0001/data/"
                                         f"azureml_{run}_output_data_{name}/versions/1", "type": "uri_folder"}
                       for name in self.run_outputs.get(run, {})}
            return 200, {"runMetadata": {"runId": run, "status": "Completed", "outputs": outputs}}, {}
        if path == f"{DATA}/dataversion/batchGetResolvedUris":
            resolved = {}
            for asset_id in body["values"]:
                run, name = re.search(r"/data/azureml_(.+)_output_data_([^/]+)/versions/", asset_id).groups()
                resolved[asset_id] = {"uri": f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}"
                                             f"/workspaces/{WORKSPACE}/datastores/{DATASTORE}/paths/"
                                             f"{self.run_outputs[run][name]}", "type": "uri_folder"}
            return 200, {"values": resolved}, {}
        if path == f"{WS}/datastores/{DATASTORE}":
            return 200, _datastore(), {}
        if path == f"{WS}/datastores":  # the SDK looks the default one up by listing
            return 200, {"value": [_datastore()]}, {}
        if path == f"{WS}/datastores/{DATASTORE}/listSecrets":
            return 200, {"secretsType": "Sas", "sasToken": self._container_sas(DATASTORE_CONTAINER)}, {}
        if path.endswith(f"/locations/{LOCATION}/vmSizes"):
            return 200, {"value": self.sizes}, {}
        if match := re.fullmatch(re.escape(WS) + r"/jobs/([^/]+)/cancel", path):
            if match[1] not in self.jobs:
                return (*error(404, "UserError", f"job {match[1]} not found"), {})
            self.jobs[match[1]]["properties"]["status"] = "CancelRequested"
            # Accepted: the outcome is polled at the Location the service names.
            return 202, None, {"Location": f"https://management.azure.com{WS}/operationResults/cancel-{match[1]}"}
        if match := re.fullmatch(re.escape(WS) + r"/operationResults/cancel-([^/]+)", path):
            if not self.cancel_lingers.get(match[1]):
                self.jobs[match[1]]["properties"]["status"] = "Canceled"
            return 200, None, {}
        if match := re.fullmatch(re.escape(WS) + r"/codes/([^/]+)/versions", path):
            wanted = (query or {}).get("hash", [None])[0]
            return 200, {"value": [asset for (kind, name, _), asset in self.assets.items() if kind == "codes"
                                   and name == match[1]
                                   and asset["properties"].get("properties", {}).get("hash_sha256") == wanted]}, {}
        if match := re.fullmatch(re.escape(WS) + r"/codes/([^/]+)/versions/([^/]+)/startPendingUpload", path):
            return 200, self._pending_upload(match[1], match[2]), {}
        if match := re.fullmatch(re.escape(WS) + r"/(codes|environments|components)/([^/]+)/versions/([^/]+)", path):
            return self._versioned_asset(method, *match.groups(), body)
        if (match := re.fullmatch(re.escape(WS) + r"/jobs/([^/]+)", path)) and method == "PUT":
            if match[1] in self.jobs:
                return (*error(409, "UserError", f"job {match[1]} already exists"), {})
            self.add_job(match[1], "NotStarted", **{key: value for key, value in body["properties"].items()
                                                    if key not in ("status", "services")})
            return 201, self.jobs[match[1]], {}
        if match := re.fullmatch(re.escape(WS) + r"/jobs/([^/]+)", path):
            job = self.jobs.get(match[1])
            if job and job["properties"]["status"] == "CancelRequested" and match[1] in self.cancel_lingers:
                self.cancel_lingers[match[1]] -= 1
                if self.cancel_lingers[match[1]] < 0:
                    job["properties"]["status"] = "Canceled"
            return (200, job, {}) if job else (*error(404, "UserError", f"job {match[1]} not found"), {})
        if (match := re.fullmatch(re.escape(WS) + r"/computes/([^/]+)", path)) and method == "PUT":
            # Accepted while the cluster is created: the outcome is polled at the Azure-AsyncOperation URL.
            self.computes[match[1]] = {"id": path, "name": match[1], "location": body["location"],
                                       "type": "Microsoft.MachineLearningServices/workspaces/computes",
                                       "properties": {**body["properties"], "provisioningState": "Creating"}}
            self.compute_polls[match[1]] = 0
            return 201, self.computes[match[1]], {
                "Azure-AsyncOperation": f"https://management.azure.com{WS}/computeOperationsStatus/{match[1]}"}
        if match := re.fullmatch(re.escape(WS) + r"/computeOperationsStatus/([^/]+)", path):
            # One "still creating" answer, then the final one. A short Retry-After keeps the test quick (the SDK
            # reads it as seconds; 0 would mean its default 30 s).
            self.compute_polls[match[1]] += 1
            if self.compute_polls[match[1]] == 1:
                return 200, {"status": "InProgress"}, {"Retry-After": "0.05"}
            self.computes[match[1]]["properties"]["provisioningState"] = self.created_compute_state
            return 200, {"status": "Succeeded"}, {}
        if match := re.fullmatch(re.escape(WS) + r"/computes/([^/]+)", path):
            compute = self.computes.get(match[1])
            return (200, compute, {}) if compute else (*error(404, "NotFound", f"compute {match[1]} not found"), {})
        if match := re.fullmatch(re.escape(WS) + r"/models/([^/]+)/versions/([^/]+)", path):
            found = self.assets.get(("models", match[1], match[2]))
            return (200, found, {}) if found else (*error(404, "UserError", f"model {match[1]}:{match[2]} "
                                                                            "not found"), {})
        if match := re.fullmatch(re.escape(WS) + r"/data/([^/]+)/versions/([^/]+)", path):
            key = (match[1], match[2])
            if method == "PUT":
                self.data[key] = {"id": path, "name": match[2], "properties": body["properties"]}
                return 200, self.data[key], {}
            found = self.data.get(key)
            return (200, found, {}) if found else (*error(404, "UserError", "data version not found"), {})
        return (*error(404, "NotFound", f"no fake route for {method} {path}"), {})


def _datastore() -> dict:
    return {"id": f"{WS}/datastores/{DATASTORE}", "name": DATASTORE,
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {"datastoreType": "AzureBlob", "accountName": STORAGE_ACCOUNT,
                           "containerName": DATASTORE_CONTAINER, "endpoint": "core.windows.net", "protocol": "https",
                           "isDefault": True, "credentials": {"credentialsType": "Sas"}}}


class _Adapter(requests.adapters.HTTPAdapter):
    def __init__(self, workspace: FakeWorkspace):
        super().__init__()
        self.workspace = workspace

    def send(self, request, **kwargs):
        body = json.loads(request.body) if request.body else None
        url = urlparse(request.url)
        status, payload, headers = self.workspace.answer(request.method, url.path, body, parse_qs(url.query))
        content = json.dumps(payload).encode() if payload is not None else b""
        raw = urllib3.HTTPResponse(body=io.BytesIO(content), status=status, preload_content=False, reason="fake",
                                   headers={"Content-Type": "application/json", "Content-Length": str(len(content)),
                                            **headers})
        return self.build_response(request, raw)


class _StorageAccountToAzurite(requests.adapters.HTTPAdapter):
    """`https://<account>.blob.core.windows.net/…` (the URL the SDK builds from a datastore) sent to Azurite's
    `http://host:port/<account>/…`; a SAS signs the account and container, not the URL's form."""

    def __init__(self, blob_endpoint: str):
        super().__init__()
        self.blob_endpoint = blob_endpoint.rstrip("/")

    def send(self, request, **kwargs):
        url = urlparse(request.url)
        request.url = self.blob_endpoint + url.path + (f"?{url.query}" if url.query else "")
        return super().send(request, **kwargs)


def route_storage_account_to(blob_store, monkeypatch) -> None:
    """Every `requests` session made from now on (the storage SDK makes its own) reaches the storage account
    of the fake's datastores on `blob_store` (Azurite)."""
    original_init = requests.Session.__init__

    def init(session, *args, **kwargs):
        original_init(session, *args, **kwargs)
        session.mount(f"https://{STORAGE_ACCOUNT}.blob.core.windows.net/",
                      _StorageAccountToAzurite(blob_store.blob_endpoint))

    monkeypatch.setattr(requests.Session, "__init__", init)


def transport(workspace: FakeWorkspace) -> RequestsTransport:
    """azure-core's own transport, its HTTPS answered by `workspace` (plain HTTP, e.g. Azurite, goes out as usual)."""
    session = requests.Session()
    session.mount("https://", _Adapter(workspace))
    return RequestsTransport(session=session, session_owner=False)


def ml_client(workspace: FakeWorkspace, credential: FakeCredential | None = None):
    """A real `MLClient` whose HTTP is answered by `workspace`."""
    from azure.ai.ml import MLClient

    return MLClient(credential or FakeCredential(), SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE,
                    transport=transport(workspace))
