"""The parallel job settings, named and meant as in azure-ai-ml's parallel job.

Both backends read the same `JobSettings`: the Azure ML backend passes them to
`parallel_run_function`, the local runner honours each with the same meaning.
This module imports nothing heavy so that DAG files and plugins may use it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
UNLIMITED = -1


class JobSettingsError(ValueError):
    """A job setting is out of range; the message names the setting and the value."""


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """Settings of one parallel scoring job.

    :param mini_batch_size: files per mini-batch handed to one `run()` call.
    :param mini_batch_error_threshold: failed mini-batches tolerated (-1: no limit).
    :param error_threshold: failed items tolerated over the whole job (-1: no limit).
    :param max_retries: retries of a mini-batch that raised, timed out or lost its worker.
    :param timeout: seconds one `run()` call may take before it is retried.
    :param instance_count: nodes; locally every node is a slice of this machine.
    :param max_concurrency_per_instance: worker processes per node, each calling `init()` once.
    :param logging_level: log level of the job and its workers.
    """

    mini_batch_size: int = 32
    mini_batch_error_threshold: int = UNLIMITED
    error_threshold: int = UNLIMITED
    max_retries: int = 2
    timeout: int = 300
    instance_count: int = 1
    max_concurrency_per_instance: int = 2
    logging_level: str = "INFO"

    def __post_init__(self) -> None:
        positive = ("mini_batch_size", "timeout", "instance_count", "max_concurrency_per_instance")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise JobSettingsError(f"job setting {name}={value!r} must be an integer >= 1")
        for name in ("mini_batch_error_threshold", "error_threshold"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < UNLIMITED:
                raise JobSettingsError(f"job setting {name}={value!r} must be an integer >= -1 (-1: no limit)")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise JobSettingsError(f"job setting max_retries={self.max_retries!r} must be an integer >= 0")
        if self.logging_level not in LOGGING_LEVELS:
            raise JobSettingsError(f"job setting logging_level={self.logging_level!r} must be one of {', '.join(LOGGING_LEVELS)}")

    @property
    def workers(self) -> int:
        """Worker processes in all: nodes times processes per node."""
        return self.instance_count * self.max_concurrency_per_instance

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> JobSettings:
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise JobSettingsError(f"unknown job setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


def exceeds(count: int, threshold: int) -> bool:
    """True when `count` failures break `threshold` (-1 never breaks)."""
    return threshold != UNLIMITED and count > threshold
