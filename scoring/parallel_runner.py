"""Run an entry script over a month's items the way Azure ML's parallel job does, on this machine.

Items arrive as a stream (a folder walk, or a download that yields each file as
it lands), so workers start and score while the rest of the month is still
coming. Items are grouped into mini-batches of `mini_batch_size`; `workers`
processes each import the entry script and call `init()` once, then take
mini-batches one at a time (a slow worker never holds the others). A mini-batch
that raises, outlives `timeout` or loses its worker is retried on a fresh worker
up to `max_retries` times; if it still fails it is split in halves, and halves
again, until the files that fail are alone: one bad file costs one row.

Finished rows land in a cache keyed on content (`scoring.reuse`): a rerun, a
resubmitted attempt or a restarted job scores only what is new or changed.
Thresholds are counted as Azure ML documents them: failed items are items not
scored (error rows, items of failed mini-batches, items that could not be read).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from scoring.device_profile import usable_cores
from scoring.items import InputItem, item_path
from scoring.job_settings import JobSettings, exceeds
from scoring.ledger import LEDGER_FILE, JobLedger
from scoring.merge import MergeResult, merge_ledger
from scoring.progress import describe_progress
from scoring.reuse import KEY_FIELD, RowsCache, row_key
from scoring.rows import MODEL_DIGEST, ErrorType, is_error, parse_row
from scoring.worker_pool import ERROR, INIT_ALLOWANCE_S, INIT_FAILED, READY, ROWS, Worker, WorkerPool

log = logging.getLogger("scoring.parallel_runner")

ROWS_DIR = "rows"
OUTPUTS_DIR = "outputs"
# Mini-batches formed ahead of the workers: enough that none waits, few enough that memory stays flat.
_QUEUED_BATCHES_PER_WORKER = 4


class ParallelJobFailed(RuntimeError):
    """The job broke a threshold or could not start; the message is the one line to show."""


@dataclasses.dataclass(frozen=True)
class ParallelJob:
    """What to run: the entry script, its arguments, the input folder and the settings."""

    entry_script: Path
    code_root: Path
    input_root: Path
    work_dir: Path
    program_arguments: tuple[str, ...] = ()
    settings: JobSettings = dataclasses.field(default_factory=JobSettings)
    progress_interval_s: float = 10.0
    # Where predictions.csv and errors.csv go; default: `<work_dir>/outputs`.
    output_dir: Path | None = None
    # The reuse cache; default: `<work_dir>/rows`. Attempts of one month may share one.
    rows_dir: Path | None = None
    # Model, month and profile digest (`scoring.reuse.scoring_key`): rows are reused only under the same one.
    scoring_key: str = ""
    # The sha256 of the model bytes the job's workers load: a scored row must carry it (one model per result).
    model_digest: str | None = None
    # Called with a progress snapshot (a dict of plain values) as the job advances.
    on_progress: Callable[[dict], None] | None = None


@dataclasses.dataclass(frozen=True)
class MiniBatch:
    batch_id: str
    items: tuple[tuple[str, str], ...]  # (item name, row key)
    split: bool = False  # a half of a mini-batch that failed all its retries: no retries of its own

    @property
    def names(self) -> list[str]:
        return [name for name, _key in self.items]


class _Progress:
    """Counts of the job so far; `snapshot()` is what travels to whoever watches the job (a status file)."""

    def __init__(self, interval_s: float, on_change=None):
        self.batches_total = self.items_total = 0
        self.batches_done = self.items_done = self.errors = self.reused = 0
        self.listing_complete = False
        self.interval_s = interval_s
        self.started = self.last_report = time.monotonic()
        self.phase = "scoring"
        self.profile: str | None = None
        # Seconds from the job's start until every worker of the pool had finished init() (start-up's cost);
        # None until then, and for good where some worker never got a mini-batch to report on.
        self.workers_ready_s: float | None = None
        self._on_change = on_change
        self._last_publish = 0.0

    def rate(self) -> float:
        return (self.items_done - self.reused) / max(time.monotonic() - self.started, 1e-9)

    def snapshot(self) -> dict:
        rate = self.rate()
        left = self.items_total - self.items_done
        return {
            "phase": self.phase, "batches_done": self.batches_done, "batches_total": self.batches_total,
            "items_done": self.items_done, "items_total": self.items_total, "errors": self.errors,
            "reused": self.reused, "listing_complete": self.listing_complete,
            "img_s": round(rate, 1), "eta_s": round(left / rate) if rate > 0 and self.listing_complete else None,
            "elapsed_s": round(time.monotonic() - self.started, 1), "profile": self.profile,
            "workers_ready_s": self.workers_ready_s,
        }

    def publish(self, force: bool = False) -> None:
        """Hand the snapshot over at most twice a second (always when forced): cheap, and fresh for every poll."""
        if self._on_change and (force or time.monotonic() - self._last_publish >= 0.5):
            self._last_publish = time.monotonic()
            self._on_change(self.snapshot())

    def maybe_report(self) -> None:
        if time.monotonic() - self.last_report >= self.interval_s:
            self.last_report = time.monotonic()
            log.info("progress: %s", describe_progress(self.snapshot()))


_END = object()


def run_parallel_job(job: ParallelJob, items: Iterable[InputItem]) -> MergeResult:
    """Score every item of `items` (files under `job.input_root`); writes `predictions.csv` and `errors.csv`."""
    job = dataclasses.replace(job, settings=local_settings(job.settings))
    settings = job.settings
    cache = RowsCache(job.rows_dir or job.work_dir / ROWS_DIR)
    with JobLedger(job.work_dir / LEDGER_FILE) as ledger:
        reusable = ledger.add_reusable(cache.rows(), KEY_FIELD)
        return _run(job, items, cache, ledger, reusable)


def _run(job: ParallelJob, items: Iterable[InputItem], cache: RowsCache, ledger: JobLedger,
         reusable: int) -> MergeResult:
    settings = job.settings
    progress = _Progress(job.progress_interval_s, job.on_progress)
    log.info("job starts: mini-batches of %d, %d workers (%d instances x %d), max_retries=%d, timeout=%ds, "
             "mini_batch_error_threshold=%d, error_threshold=%d; %d finished rows on record",
             settings.mini_batch_size, _workers(settings), settings.instance_count,
             settings.max_concurrency_per_instance, settings.max_retries, settings.timeout,
             settings.mini_batch_error_threshold, settings.error_threshold, reusable)
    _Dispatcher(job, cache, ledger, progress).run(items)

    progress.phase = "merging"
    progress.publish(force=True)
    cache.compact(ledger.kept_rows())  # keeps what is valid now, for the next attempt or rerun, before any verdict
    result = merge_ledger(ledger, job.output_dir or job.work_dir / OUTPUTS_DIR,
                          error_threshold=settings.error_threshold)
    progress.phase = "done"
    progress.publish(force=True)
    log.info("job done: %d images, %d scored, %d errors (%d rows reused) in %.1fs%s",
             result.inputs, result.scored, result.errors, progress.reused, time.monotonic() - progress.started,
             "" if progress.workers_ready_s is None else f", workers ready after {progress.workers_ready_s:.1f}s")
    return result


class _Dispatcher:
    """Forms mini-batches as items arrive, hands them to idle workers and settles each one."""

    def __init__(self, job: ParallelJob, cache: RowsCache, ledger: JobLedger, progress: _Progress):
        self.job, self.settings = job, job.settings
        self.cache, self.ledger, self.progress = cache, ledger, progress
        self.pending: list[tuple[str, str]] = []
        self.todo: collections.deque[MiniBatch] = collections.deque()
        self.attempts: collections.Counter[str] = collections.Counter()
        self.failed_batches = 0
        self.batch_count = 0
        self.pool = WorkerPool(_workers(self.settings), code_root=str(job.code_root),
                               entry_script=str(job.entry_script), argv=list(job.program_arguments),
                               logging_level=self.settings.logging_level)
        self.arrivals: queue.Queue = queue.Queue(maxsize=4096)
        self.feed_error: BaseException | None = None

    def run(self, items: Iterable[InputItem]) -> None:
        # Keep freed batch-sized buffers in the heap instead of returning them to the kernel after
        # every batch: the page faults of fresh mmaps cost about a tenth of the throughput (bench/).
        for name, value in (("MALLOC_MMAP_THRESHOLD_", "33554432"), ("MALLOC_TRIM_THRESHOLD_", "268435456")):
            os.environ.setdefault(name, value)  # read by each worker's C library when it starts
        feeder = threading.Thread(target=self._feed, args=(items,), name="input-feed", daemon=True)
        feeder.start()
        try:
            # Workers start now: their init() (imports, model load) overlaps the listing and the download.
            self.pool.start()
            while not self.progress.listing_complete or self.todo or self.pool.busy():
                self._take_arrivals()
                self._assign()
                self._settle_ready()
                self._settle_timeouts()
                self.progress.publish()
                self.progress.maybe_report()
        finally:
            self.pool.stop()

    def _feed(self, items: Iterable[InputItem]) -> None:
        try:
            for item in items:
                self.arrivals.put(item)
        except BaseException as error:  # noqa: BLE001 - handed to the dispatcher, which fails the job with it
            self.feed_error = error
        self.arrivals.put(_END)

    def _take_arrivals(self) -> None:
        size = self.settings.mini_batch_size
        # Only while few mini-batches wait: the rest of the month stays in the feed (bounded), not in memory.
        while not self.progress.listing_complete and len(self.todo) < _QUEUED_BATCHES_PER_WORKER * self.pool.size:
            try:
                item = self.arrivals.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                if self.feed_error is not None:
                    error = self.feed_error
                    raise ParallelJobFailed(" ".join(str(error).split()) or type(error).__name__) from error
                self.progress.listing_complete = True
                break
            self._admit(item)
            if len(self.pending) >= size:
                self._plan(tuple(self.pending))
                self.pending = []
        if self.progress.listing_complete and self.pending:
            self._plan(tuple(self.pending))
            self.pending = []

    def _admit(self, item: InputItem) -> None:
        if not self.ledger.add_input(item.name):
            raise ParallelJobFailed(f"the input listing named {item.name!r} twice; the month folder changed while "
                                    "it was listed: run the month again")
        self.progress.items_total += 1
        if item.failure is not None:
            self.ledger.record_failure(item.name, *item.failure)
            self._count(1, 1)
            return
        key = row_key(item.name, item.identity, self.job.scoring_key)
        row = self.ledger.reusable(key)
        if row is not None and row.get("image") == item.name and self._same_model(row):
            self.ledger.record_row(row)
            self.progress.reused += 1
            self._count(1, int(is_error(row)))
            return
        self.pending.append((item.name, key))

    def _count(self, items: int, errors: int) -> None:
        self.progress.items_done += items
        self.progress.errors += errors
        self._check_error_threshold()

    def _plan(self, items: tuple[tuple[str, str], ...], split: bool = False) -> None:
        self.batch_count += 1
        self.progress.batches_total += 1
        self.todo.append(MiniBatch(f"mb-{self.batch_count:06d}", items, split))

    def _assign(self) -> None:
        for worker in self.pool.idle():
            if not self.todo:
                return
            batch = self.todo.popleft()
            if not self.pool.send(worker, batch, [str(item_path(self.job.input_root, name)) for name in batch.names]):
                self.todo.appendleft(batch)  # its worker was gone (and is replaced): the next round sends it

    def _settle_ready(self) -> None:
        # While items still arrive, look at the queue often; else wait until a worker answers.
        poll_s = 1.0 if self.progress.listing_complete else 0.05
        for worker, kind, payload in self.pool.answers(timeout=self.settings.timeout, poll_s=poll_s):
            if kind == READY:  # init() done; the batch it was sent starts now
                self._on_ready(payload)
            else:
                self._settle(worker, kind, payload)

    def _on_ready(self, summary: str | None) -> None:
        if self.progress.workers_ready_s is None and all(worker.ready for worker in self.pool.workers):
            self.progress.workers_ready_s = round(time.monotonic() - self.progress.started, 2)
            log.info("%s ready after %.1fs", "the worker" if self.pool.size == 1 else f"all {self.pool.size} workers",
                     self.progress.workers_ready_s)
            self.progress.publish(force=True)
        if summary and summary != self.progress.profile:
            log.info("worker ready: %s", summary)
            self.progress.profile = summary
            self.progress.publish(force=True)

    def _settle_timeouts(self) -> None:
        for worker in self.pool.timed_out(self.settings.timeout):
            ready = worker.ready
            batch, _seconds = self.pool.release(worker)
            self.pool.replace(worker)
            self._retry_or_fail(batch, f"run() did not finish within timeout={self.settings.timeout}s" if ready
                                else f"init() did not finish within {INIT_ALLOWANCE_S}s")

    def _settle(self, worker: Worker, kind: str, payload) -> None:
        batch, seconds = self.pool.release(worker)
        if kind == ROWS:
            self._accept(batch, payload, seconds)
        elif kind == INIT_FAILED:
            raise ParallelJobFailed(f"init() failed in a worker: {payload}")
        elif kind == ERROR:
            self._retry_or_fail(batch, f"run() raised {payload}")
        else:
            self.pool.replace(worker)
            self._retry_or_fail(batch, f"worker process died (exit code {payload})")

    def _accept(self, batch: MiniBatch, lines: list[str], seconds: float) -> None:
        keys = dict(batch.items)
        try:
            rows = [parse_row(line) for line in lines]
            strangers = sorted({row["image"] for row in rows} - keys.keys())
        except (TypeError, ValueError, KeyError) as error:
            self._retry_or_fail(batch, f"run() returned a row that is not a result row: {error!r}")
            return
        if strangers:
            self._retry_or_fail(
                batch, f"run() returned a row for {strangers[0]!r}, not in its mini-batch (is --input_root right?)"
            )
            return
        if other := next((row for row in rows if not self._same_model(row)), None):
            self._retry_or_fail(batch, f"run() scored {other['image']!r} with model bytes "
                                       f"{str(other.get(MODEL_DIGEST))[:12]}, not the job's {self.job.model_digest[:12]}")
            return
        answered = {}
        for row in rows:
            answered.setdefault(row["image"], {**row, KEY_FIELD: keys[row["image"]]})
        self.cache.write(answered.values())
        for row in answered.values():
            self.ledger.record_row(row)
        errors = sum(is_error(row) for row in answered.values())
        for name in keys.keys() - answered.keys():  # run() left it out: an error, not a loss
            self.ledger.record_failure(name, ErrorType.MISSING_RESULT,
                                       f"run() returned no row for it ({batch.batch_id})")
            errors += 1
        self.attempts.pop(batch.batch_id, None)
        log.info("mini-batch %s done: %d images, %d errors, %.2fs", batch.batch_id, len(keys), errors, seconds)
        self.progress.batches_done += 1
        self._count(len(keys), errors)

    def _same_model(self, row: dict) -> bool:
        """A scored row stands only if it was scored with the job's model bytes (error rows carry none)."""
        return self.job.model_digest is None or is_error(row) or row.get(MODEL_DIGEST) == self.job.model_digest

    def _retry_or_fail(self, batch: MiniBatch, reason: str) -> None:
        self.attempts[batch.batch_id] += 1
        retries = 0 if batch.split else self.settings.max_retries
        if self.attempts[batch.batch_id] <= retries:
            log.warning("mini-batch %s: %s; retry %d of %d", batch.batch_id, reason, self.attempts[batch.batch_id],
                        retries)
            self.todo.append(batch)
            return
        self.progress.batches_done += 1
        self.attempts.pop(batch.batch_id, None)
        if not batch.split:
            log.error("mini-batch %s failed after %d retries: %s", batch.batch_id, retries, reason)
            self.failed_batches += 1
            if exceeds(self.failed_batches, self.settings.mini_batch_error_threshold):
                raise ParallelJobFailed(
                    f"{self.failed_batches} mini-batches failed, above mini_batch_error_threshold="
                    f"{self.settings.mini_batch_error_threshold}; last: {reason}"
                )
        if len(batch.items) > 1:
            # Split until the files that fail are alone: the others are scored, not written off with them.
            half = len(batch.items) // 2
            log.warning("mini-batch %s: splitting its %d files to find the one(s) that fail", batch.batch_id,
                        len(batch.items))
            self._plan(batch.items[:half], split=True)
            self._plan(batch.items[half:], split=True)
            return
        (name, _key), = batch.items
        log.error("%s fails on its own: %s", name, reason)
        self.ledger.record_failure(name, ErrorType.MINI_BATCH_FAILED, f"scoring this file alone failed: {reason}")
        self._count(1, 1)

    def _check_error_threshold(self) -> None:
        if exceeds(self.progress.errors, self.settings.error_threshold):
            raise ParallelJobFailed(
                f"{self.progress.errors} items failed so far, above error_threshold={self.settings.error_threshold} "
                f"(of {self.progress.items_total} items{'' if self.progress.listing_complete else ' listed so far'}); "
                "see errors in the job log"
            )


def local_settings(settings: JobSettings) -> JobSettings:
    """The settings on this machine, where every node (`instance_count`) is a slice of its cores and memory."""
    import psutil

    nodes = settings.instance_count
    return settings.for_node(max(1, usable_cores() // nodes), psutil.virtual_memory().total / 2**30 / nodes)


def _workers(settings: JobSettings) -> int:
    """Worker processes in all: nodes times processes per node."""
    return settings.instance_count * settings.max_concurrency_per_instance
