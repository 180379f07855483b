"""Run an entry script over a folder the way Azure ML's parallel job does, on this machine.

Files are split into mini-batches of `mini_batch_size`; `workers` processes
each import the entry script and call `init()` once, then take mini-batches one
at a time (a slow worker never holds the others). A mini-batch that raises,
outlives `timeout` or loses its worker is retried on a fresh worker up to
`max_retries` times. Each finished mini-batch's rows land in their own file
(`append_row`), written atomically, so a killed job restarted on the same work
folder skips what is done. Thresholds are counted as Azure ML documents them:
failed items are items not scored (error rows, items of failed mini-batches).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import importlib.util
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from scoring.job_settings import JobSettings, exceeds
from scoring.items import list_input_items
from scoring.merge import MergeResult, merge_rows, read_rows
from scoring.rows import ErrorType, is_error, parse_row

log = logging.getLogger("scoring.parallel_runner")

ROWS_DIR = "rows"
PLAN_FILE = "plan.sha256"
OUTPUTS_DIR = "outputs"


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
    # Inputs that never reached the input folder, with (error_type, message): still accounted for.
    known_failures: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    # Where predictions.csv and errors.csv go; default: `<work_dir>/outputs`.
    output_dir: Path | None = None


@dataclasses.dataclass(frozen=True)
class MiniBatch:
    batch_id: str
    files: tuple[str, ...]  # image ids, relative to the input root


def plan_mini_batches(items: Sequence[str], size: int) -> list[MiniBatch]:
    """Deterministic split of the sorted items: the same input gives the same ids on a restart."""
    return [
        MiniBatch(f"mb-{index:06d}", tuple(items[start:start + size]))
        for index, start in enumerate(range(0, len(items), size))
    ]


class _Progress:
    def __init__(self, batches: int, items: int, interval_s: float):
        self.batches_total, self.items_total = batches, items
        self.batches_done = self.items_done = self.errors = 0
        self.interval_s = interval_s
        self.started = self.last_report = time.monotonic()
        self.items_at_start = 0

    def add(self, items: int, errors: int) -> None:
        self.batches_done += 1
        self.items_done += items
        self.errors += errors

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.items_done - self.items_at_start) / elapsed
        left = self.items_total - self.items_done
        eta = f"{left / rate:.0f}s" if rate > 0 else "unknown"
        percent = 100.0 * self.items_done / max(self.items_total, 1)
        return (
            f"mini-batches {self.batches_done}/{self.batches_total}, images {self.items_done}/{self.items_total} "
            f"({percent:.1f}%), {rate:.1f} img/s, errors {self.errors}, ETA {eta}"
        )

    def maybe_report(self) -> None:
        if time.monotonic() - self.last_report >= self.interval_s:
            self.last_report = time.monotonic()
            log.info("progress: %s", self.line())


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.Process
    conn: multiprocessing.connection.Connection
    batch: MiniBatch | None = None
    started: float = 0.0


def run_parallel_job(job: ParallelJob) -> MergeResult:
    """Score every file under `job.input_root`; writes `outputs/predictions.csv` and `errors.csv`."""
    settings = job.settings
    items = list_input_items(job.input_root)
    batches = plan_mini_batches(items, settings.mini_batch_size)
    rows_dir = job.work_dir / ROWS_DIR
    _keep_rows_only_for_this_plan(rows_dir, items, settings.mini_batch_size)
    progress = _Progress(len(batches), len(items), job.progress_interval_s)

    todo = collections.deque()
    for batch in batches:
        done = _rows_file(rows_dir, batch)
        if done.exists():
            progress.add(len(batch.files), sum(is_error(row) for row in read_rows([done])))
        else:
            todo.append(batch)
    progress.items_at_start = progress.items_done
    log.info(
        "job starts: %d images in %d mini-batches of %d, %d already done; %d workers (%d instances x %d), "
        "max_retries=%d, timeout=%ds, mini_batch_error_threshold=%d, error_threshold=%d",
        len(items), len(batches), settings.mini_batch_size, len(batches) - len(todo), settings.workers,
        settings.instance_count, settings.max_concurrency_per_instance, settings.max_retries, settings.timeout,
        settings.mini_batch_error_threshold, settings.error_threshold,
    )

    failed_items: dict[str, tuple[str, str]] = dict(job.known_failures)
    progress.errors += len(failed_items)
    if todo:
        _Dispatcher(job, todo, rows_dir, progress, failed_items).run()

    result = merge_rows(
        read_rows(_rows_file(rows_dir, batch) for batch in batches if _rows_file(rows_dir, batch).exists()),
        [*items, *job.known_failures],
        job.output_dir or job.work_dir / OUTPUTS_DIR,
        failed_items=failed_items,
        error_threshold=settings.error_threshold,
    )
    log.info(
        "job done: %d images, %d scored, %d errors in %.1fs",
        result.inputs, result.scored, result.errors, time.monotonic() - progress.started,
    )
    return result


def _keep_rows_only_for_this_plan(rows_dir: Path, items: Sequence[str], mini_batch_size: int) -> None:
    """Finished mini-batches are reused only if the inputs and the split are the same as when they ran."""
    digest = hashlib.sha256(f"{mini_batch_size}\n".encode())
    for item in items:
        digest.update(item.encode("utf-8", "surrogateescape") + b"\n")
    plan = rows_dir / PLAN_FILE
    if rows_dir.is_dir() and (not plan.is_file() or plan.read_text(encoding="utf-8") != digest.hexdigest()):
        stale = list(rows_dir.glob("*.jsonl"))
        if stale:
            log.warning("inputs or mini_batch_size changed since the last run: discarding %d finished "
                        "mini-batches and starting over", len(stale))
        shutil.rmtree(rows_dir)
    rows_dir.mkdir(parents=True, exist_ok=True)
    plan.write_text(digest.hexdigest(), encoding="utf-8")


def _rows_file(rows_dir: Path, batch: MiniBatch) -> Path:
    return rows_dir / f"{batch.batch_id}.jsonl"


class _Dispatcher:
    """Hands mini-batches to idle workers and settles each one: rows written, retried or failed."""

    def __init__(self, job, todo, rows_dir, progress, failed_items):
        self.job, self.settings = job, job.settings
        self.todo: collections.deque[MiniBatch] = todo
        self.rows_dir, self.progress, self.failed_items = rows_dir, progress, failed_items
        self.attempts: collections.Counter[str] = collections.Counter()
        self.failed_batches = 0
        self.workers: list[_Worker] = []
        self.context = multiprocessing.get_context("spawn")
        self.threads_per_worker = max(1, (os.cpu_count() or 1) // self.settings.workers)

    def run(self) -> None:
        # Keep freed batch-sized buffers in the heap instead of returning them to the kernel after
        # every batch: the page faults of fresh mmaps cost about a tenth of the throughput (bench/).
        for name, value in (("MALLOC_MMAP_THRESHOLD_", "33554432"), ("MALLOC_TRIM_THRESHOLD_", "268435456")):
            os.environ.setdefault(name, value)  # read by each worker's C library when it starts
        try:
            for _ in range(min(self.settings.workers, len(self.todo))):
                self.workers.append(self._start_worker())
            while self.todo or any(w.batch for w in self.workers):
                self._assign()
                self._settle_ready()
                self._settle_timeouts()
                self.progress.maybe_report()
        finally:
            for worker in self.workers:  # ask all first, then wait: they exit side by side
                _send_quietly(worker.conn, None)
            for worker in self.workers:
                self._stop_worker(worker)

    def _start_worker(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main,
            args=(child, str(self.job.code_root), str(self.job.entry_script), list(self.job.program_arguments),
                  self.settings.logging_level, self.threads_per_worker),
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _stop_worker(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            _send_quietly(worker.conn, None)
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        worker.conn.close()

    def _assign(self) -> None:
        for worker in self.workers:
            if worker.batch is None and self.todo:
                batch = self.todo.popleft()
                files = [str(self.job.input_root / name) for name in batch.files]
                try:
                    worker.conn.send((batch.batch_id, files))
                except (BrokenPipeError, OSError):
                    self.todo.appendleft(batch)
                    self._replace(worker)
                    continue
                worker.batch, worker.started = batch, time.monotonic()

    def _settle_ready(self) -> None:
        busy = [w for w in self.workers if w.batch]
        waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        deadline = min((w.started + self.settings.timeout for w in busy), default=time.monotonic() + 1)
        timeout = max(0.0, min(deadline - time.monotonic(), 1.0))
        ready = set(multiprocessing.connection.wait(waitables, timeout=timeout))
        for worker in busy:
            if worker.conn in ready:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    message = ("died", None)
                self._settle(worker, message)
            elif worker.process.sentinel in ready:
                self._settle(worker, ("died", None))

    def _settle_timeouts(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.batch and now - worker.started > self.settings.timeout:
                batch = worker.batch
                self._replace(worker)
                self._retry_or_fail(batch, f"run() did not finish within timeout={self.settings.timeout}s")

    def _settle(self, worker: _Worker, message: tuple) -> None:
        batch, (kind, payload) = worker.batch, message
        worker.batch = None
        log.debug("mini-batch %s: %s after %.2fs", batch.batch_id, kind, time.monotonic() - worker.started)
        if kind == "rows":
            self._accept(batch, payload)
        elif kind == "init_failed":
            raise ParallelJobFailed(f"init() failed in a worker: {payload}")
        elif kind == "error":
            self._retry_or_fail(batch, f"run() raised {payload}")
        else:
            worker.process.join(5)  # the pipe closes a moment before the exit code is known
            exit_code = worker.process.exitcode
            self._replace(worker)
            self._retry_or_fail(batch, f"worker process died (exit code {exit_code})")

    def _accept(self, batch: MiniBatch, lines: list[str]) -> None:
        wanted = set(batch.files)
        try:
            rows = [parse_row(line) for line in lines]
            strangers = sorted({row["image"] for row in rows} - wanted)
        except (TypeError, ValueError, KeyError) as error:
            self._retry_or_fail(batch, f"run() returned a row that is not a result row: {error!r}")
            return
        if strangers:
            self._retry_or_fail(
                batch, f"run() returned a row for {strangers[0]!r}, not in its mini-batch (is --input_root right?)"
            )
            return
        target = _rows_file(self.rows_dir, batch)
        partial = target.with_suffix(".partial")
        partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        os.replace(partial, target)
        answered = {row["image"] for row in rows}
        errors = sum(is_error(row) for row in rows) + len(wanted - answered)
        self.progress.add(len(batch.files), errors)
        self._check_error_threshold()

    def _retry_or_fail(self, batch: MiniBatch, reason: str) -> None:
        self.attempts[batch.batch_id] += 1
        if self.attempts[batch.batch_id] <= self.settings.max_retries:
            log.warning("mini-batch %s: %s; retry %d of %d",
                        batch.batch_id, reason, self.attempts[batch.batch_id], self.settings.max_retries)
            self.todo.append(batch)
            return
        log.error("mini-batch %s failed after %d retries: %s", batch.batch_id, self.settings.max_retries, reason)
        self.failed_batches += 1
        for image in batch.files:
            self.failed_items[image] = (ErrorType.MINI_BATCH_FAILED, f"mini-batch {batch.batch_id} failed: {reason}")
        self.progress.add(len(batch.files), len(batch.files))
        if exceeds(self.failed_batches, self.settings.mini_batch_error_threshold):
            raise ParallelJobFailed(
                f"{self.failed_batches} mini-batches failed, above mini_batch_error_threshold="
                f"{self.settings.mini_batch_error_threshold}; last: {reason}"
            )
        self._check_error_threshold()

    def _check_error_threshold(self) -> None:
        if exceeds(self.progress.errors, self.settings.error_threshold):
            raise ParallelJobFailed(
                f"{self.progress.errors} items failed so far, above error_threshold={self.settings.error_threshold} "
                f"(of {self.progress.items_total} items); see errors in the job log"
            )

    def _replace(self, worker: _Worker) -> None:
        self._stop_worker(worker)
        index = self.workers.index(worker)
        self.workers[index] = self._start_worker()


def _send_quietly(conn, message) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):
        pass  # the worker is gone already


def _worker_main(conn, code_root: str, entry_script: str, argv: list[str], level: str, threads: int) -> None:
    """One worker process: `init()` once, then `run()` for each mini-batch it is sent."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s [worker %(process)d] %(name)s: %(message)s")
    sys.argv = [entry_script, *argv]
    sys.path.insert(0, code_root)
    try:
        spec = importlib.util.spec_from_file_location("_parallel_entry_script", entry_script)
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        entry.init()
    except BaseException as error:  # noqa: BLE001 - report any init failure, then exit
        conn.send(("init_failed", _one_line(error)))
        return
    while True:
        try:
            task = conn.recv()
        except EOFError:
            task = None
        if task is None:
            # Everything is sent; skip the interpreter's slow teardown of torch (about a second).
            logging.shutdown()
            os._exit(0)
        _batch_id, files = task
        try:
            rows = entry.run(files)
            conn.send(("rows", [str(row) for row in rows]))
        except Exception as error:  # noqa: BLE001 - the parent decides about retries
            conn.send(("error", _one_line(error)))


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
