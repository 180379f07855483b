"""Run operators outside a scheduler: a minimal context, and a hook whose backend the test chooses."""

from types import SimpleNamespace

from batch_scoring.hooks.azure_ml import AzureMLHook


class RecordingTI:
    def __init__(self):
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


def context() -> dict:
    return {"ti": RecordingTI(), "dag": SimpleNamespace(dag_id="monthly_batch_scoring")}


def with_backend(operator, backend):
    """Give `operator` a hook over `backend` (what the connection would have built)."""
    hook = AzureMLHook(azure_ml_conn_id=operator.azure_ml_conn_id)
    hook.__dict__["backend"] = backend
    operator.__dict__["hook"] = hook
    return operator
