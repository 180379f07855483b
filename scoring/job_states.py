"""Azure ML's job states, the one vocabulary of both backends (azure.ai.ml's run-history words).

The local backend writes these strings into its jobs' status files and the Azure ML
backend reads them from the service; the operators, the trigger and the job pages
judge a job by the sets below. Here because both sides may import `scoring`.
"""

from __future__ import annotations


class JobStatus:
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    PROVISIONING = "Provisioning"
    STARTING = "Starting"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"


# Nothing of the job runs any more: there is nothing to cancel, its outputs are final.
FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
# The attempt will not complete: the wait fails it (a retry submits the next attempt). NotResponding may still
# run, so it is not finished: the next attempt cancels it first.
FAILURE_STATES = frozenset({JobStatus.FAILED, JobStatus.CANCELED, JobStatus.NOT_RESPONDING})
# The wait stops on these: finished, or given up on.
TERMINAL_STATUSES = FINISHED_STATUSES | FAILURE_STATES
# Neither running nor ended: the wait bounds them by their own timeout instead of its deadline of a day.
STALLED_STATUSES = frozenset({JobStatus.PAUSED, JobStatus.UNKNOWN})
