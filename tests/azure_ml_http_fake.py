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
        self.data: dict[tuple[str, str], dict] = {}
        self.sizes = [{"name": "Standard_NC4as_T4_v3", "family": "standardNCASv3_T4Family", "vCPUs": 4, "gpus": 1,
                       "memoryGB": 28.0, "lowPriorityCapable": True},
                      {"name": "Standard_D16s_v3", "family": "standardDSv3Family", "vCPUs": 16, "gpus": 0,
                       "memoryGB": 64.0, "lowPriorityCapable": True}]
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

    def add_compute(self, name: str, *, state: str = "Succeeded", errors: list | None = None,
                    size: str = "STANDARD_NC4AS_T4_V3") -> None:
        self.computes[name] = {
            "id": f"{WS}/computes/{name}", "name": name, "location": LOCATION,
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "properties": {"computeType": "AmlCompute", "provisioningState": state,
                           "provisioningErrors": errors,
                           "properties": {"vmSize": size, "vmPriority": "LowPriority",
                                          "scaleSettings": {"maxNodeCount": 2, "minNodeCount": 0,
                                                            "nodeIdleTimeBeforeScaleDown": "PT120S"}}},
        }

    def _pending_upload(self, name: str, version: str) -> dict:
        """A temporary container for a code snapshot, with a write SAS: what `startPendingUpload` returns."""
        from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

        service = BlobServiceClient.from_connection_string(self.blob_store.connection_string)
        container = f"code-{name}-{version}".lower()[:63]
        if not service.get_container_client(container).exists():
            service.create_container(container)
        sas = generate_container_sas(service.account_name, container, account_key=service.credential.account_key,
                                     permission=ContainerSasPermissions(read=True, write=True, list=True, add=True,
                                                                        create=True),
                                     expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        url = f"{service.url.rstrip('/')}/{container}"
        return {"blobReferenceForConsumption": {"blobUri": url, "storageAccountArmId": None,
                                                "credential": {"credentialType": "SAS", "sasUri": f"{url}?{sas}"}},
                "pendingUploadId": f"{name}-{version}", "pendingUploadType": "TemporaryBlobReference"}

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
            return 200, {"id": WS, "name": WORKSPACE, "location": LOCATION, "properties": {}}, {}
        if path.endswith(f"/locations/{LOCATION}/vmSizes"):
            return 200, {"value": self.sizes}, {}
        if match := re.fullmatch(re.escape(WS) + r"/jobs/([^/]+)/cancel", path):
            if match[1] not in self.jobs:
                return (*error(404, "UserError", f"job {match[1]} not found"), {})
            self.jobs[match[1]]["properties"]["status"] = "CancelRequested"
            # Accepted: the outcome is polled at the Location the service names.
            return 202, None, {"Location": f"https://management.azure.com{WS}/operationResults/cancel-{match[1]}"}
        if match := re.fullmatch(re.escape(WS) + r"/operationResults/cancel-([^/]+)", path):
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
            return (200, job, {}) if job else (*error(404, "UserError", f"job {match[1]} not found"), {})
        if match := re.fullmatch(re.escape(WS) + r"/computes/([^/]+)", path):
            compute = self.computes.get(match[1])
            return (200, compute, {}) if compute else (*error(404, "NotFound", f"compute {match[1]} not found"), {})
        if match := re.fullmatch(re.escape(WS) + r"/data/([^/]+)/versions/([^/]+)", path):
            key = (match[1], match[2])
            if method == "PUT":
                self.data[key] = {"id": path, "name": match[2], "properties": body["properties"]}
                return 200, self.data[key], {}
            found = self.data.get(key)
            return (200, found, {}) if found else (*error(404, "UserError", "data version not found"), {})
        return (*error(404, "NotFound", f"no fake route for {method} {path}"), {})


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
