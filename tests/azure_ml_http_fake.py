"""A local stand-in for the Azure ML REST API under a real `MLClient`: the SDK's own serialization,
long-running operations and error mapping run; only the bytes on the wire are ours.

HTTP goes through azure-core's own `RequestsTransport`, over a `requests` session whose adapter
answers from `FakeWorkspace` instead of the network. Bodies follow the REST API's JSON shapes.
"""

from __future__ import annotations

import io
import json
import re
from urllib.parse import urlparse

import requests
import urllib3
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import RequestsTransport

SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "sub-0001", "rg-scoring", "ws-scoring"
WS = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
      f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}")
LOCATION = "westeurope"


class FakeCredential:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("fake-token", 4102444800)

    def get_token_info(self, *scopes, options=None):
        return AccessTokenInfo("fake-token", 4102444800)


def error(status: int, code: str, message: str) -> tuple[int, dict]:
    return status, {"error": {"code": code, "message": message}}


class FakeWorkspace:
    """Jobs, computes, data assets and VM sizes of one workspace, as the REST API returns them."""

    def __init__(self):
        self.jobs: dict[str, dict] = {}
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

    def answer(self, method: str, path: str, body: dict | None) -> tuple[int, dict | None, dict]:
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
        status, payload, headers = self.workspace.answer(request.method, urlparse(request.url).path, body)
        content = json.dumps(payload).encode() if payload is not None else b""
        raw = urllib3.HTTPResponse(body=io.BytesIO(content), status=status, preload_content=False, reason="fake",
                                   headers={"Content-Type": "application/json", "Content-Length": str(len(content)),
                                            **headers})
        return self.build_response(request, raw)


def ml_client(workspace: FakeWorkspace):
    """A real `MLClient` whose HTTP is answered by `workspace`."""
    from azure.ai.ml import MLClient

    session = requests.Session()
    session.mount("https://", _Adapter(workspace))
    return MLClient(FakeCredential(), SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE,
                    transport=RequestsTransport(session=session, session_owner=False))
