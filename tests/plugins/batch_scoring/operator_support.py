"""Run operators outside a scheduler: a minimal context, and a hook whose backend the test chooses."""

from types import SimpleNamespace

from batch_scoring.hooks.azure_ml import AzureMLHook


class RecordingTI:
    def __init__(self, try_number: int = 1):
        self.xcom: dict[str, object] = {}
        self.try_number = try_number

    def xcom_push(self, key, value):
        self.xcom[key] = value


def context(*, try_number: int = 1, run_id: str = "scheduled__2026-11-01") -> dict:
    return {"ti": RecordingTI(try_number), "dag": SimpleNamespace(dag_id="monthly_batch_scoring"), "run_id": run_id}


def with_backend(operator, backend):
    """Give `operator` a hook over `backend` (what the connection would have built)."""
    hook = AzureMLHook(azure_ml_conn_id=operator.azure_ml_conn_id)
    hook.__dict__["backend"] = backend
    operator.__dict__["hook"] = hook
    return operator
