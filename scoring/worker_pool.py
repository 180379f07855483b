"""The local runner's worker processes, as Azure ML runs them on a node.

Each worker imports the entry script, calls `init()` once, then `run()` for each
mini-batch it is sent. The pool starts and replaces workers, sends a mini-batch to an
idle one, and reports what its busy workers answered (ready, rows, an error, an
`init()` failure, death) or which of them outlived their timeout; what to make of it
(retries, splits, thresholds) is the runner's business.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

# How long a fresh worker's init() may take before the clock of the mini-batch it was sent starts anyway.
INIT_ALLOWANCE_S = 600
READY, ROWS, ERROR, INIT_FAILED, DIED = "ready", "rows", "error", "init_failed", "died"


@dataclasses.dataclass
class Worker:
    process: multiprocessing.Process
    conn: multiprocessing.connection.Connection
    batch: Any = None  # the mini-batch it runs, if any
    started: float = 0.0  # when its batch's clock started: at sending it, or when init() finished
    ready: bool = False  # init() finished

    def deadline(self, timeout: int) -> float:
        """When the batch it runs times out: `timeout` counts run() only, a fresh worker's init() gets its own
        allowance first (imports, model load, compile)."""
        return self.started + timeout + (0 if self.ready else INIT_ALLOWANCE_S)


class WorkerPool:
    def __init__(self, size: int, *, code_root: str, entry_script: str, argv: list[str], logging_level: str):
        self.size = size
        self._args = (code_root, entry_script, list(argv), logging_level)
        self._context = multiprocessing.get_context("spawn")
        self.workers: list[Worker] = []

    def start(self) -> None:
        self.workers = [self._start() for _ in range(self.size)]

    def idle(self) -> Iterator[Worker]:
        return (worker for worker in self.workers if worker.batch is None)

    def busy(self) -> list[Worker]:
        return [worker for worker in self.workers if worker.batch is not None]

    def send(self, worker: Worker, batch: Any, files: list[str]) -> bool:
        """Hand `batch` to the idle `worker`; False (and the worker replaced) if it was gone."""
        try:
            worker.conn.send((batch.batch_id, files))
        except (BrokenPipeError, OSError):
            self.replace(worker)
            return False
        worker.batch, worker.started = batch, time.monotonic()
        return True

    def answers(self, *, timeout: int, poll_s: float) -> list[tuple[Worker, str, Any]]:
        """What busy workers said within `poll_s` (sooner if a batch's deadline comes first): (worker, kind,
        payload). A READY worker keeps its batch, whose clock starts now; DIED's payload is the exit code."""
        busy = self.busy()
        deadline = min((w.deadline(timeout) for w in busy), default=time.monotonic() + 1)
        wait_s = max(0.0, min(deadline - time.monotonic(), poll_s))
        if not busy:
            time.sleep(wait_s)
            return []
        ready = set(multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                                                    timeout=wait_s))
        answers = []
        for worker in busy:
            if worker.conn in ready:
                try:
                    kind, payload = worker.conn.recv()
                except (EOFError, OSError):
                    kind, payload = DIED, None
                if kind == READY:
                    worker.ready, worker.started = True, time.monotonic()
            elif worker.process.sentinel in ready:
                kind, payload = DIED, None
            else:
                continue
            if kind == DIED:
                worker.process.join(5)  # the pipe closes a moment before the exit code is known
                payload = worker.process.exitcode
            answers.append((worker, kind, payload))
        return answers

    def timed_out(self, timeout: int) -> list[Worker]:
        now = time.monotonic()
        return [worker for worker in self.busy() if now > worker.deadline(timeout)]

    def release(self, worker: Worker) -> tuple[Any, float]:
        """The worker's batch, taken back, and the seconds it ran."""
        batch, worker.batch = worker.batch, None
        return batch, time.monotonic() - worker.started

    def replace(self, worker: Worker) -> None:
        self._stop(worker)
        self.workers[self.workers.index(worker)] = self._start()

    def stop(self) -> None:
        for worker in self.workers:  # ask all first, then wait: they exit side by side
            _send_quietly(worker.conn, None)
        for worker in self.workers:
            self._stop(worker)

    def _start(self) -> Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, *self._args), daemon=True)
        process.start()
        child.close()
        return Worker(process, parent)

    @staticmethod
    def _stop(worker: Worker) -> None:
        if worker.process.is_alive():
            _send_quietly(worker.conn, None)
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        worker.conn.close()


def _send_quietly(conn, message) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):
        pass  # the worker is gone already


def _worker_main(conn, code_root: str, entry_script: str, argv: list[str], level: str) -> None:
    """One worker process: `init()` once, then `run()` for each mini-batch it is sent (the entry script sets
    its own threads, from the workers sharing the node, as it does on Azure ML)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s [worker %(process)d] %(name)s: %(message)s")
    sys.argv = [entry_script, *argv]
    sys.path.insert(0, code_root)
    try:
        spec = importlib.util.spec_from_file_location("_parallel_entry_script", entry_script)
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        summary = entry.init()
    except BaseException as error:  # noqa: BLE001 - report any init failure, then exit
        conn.send((INIT_FAILED, _one_line(error)))
        return
    # What init() returns (Azure ML ignores it) is the worker's one-line self-description, e.g. its profile.
    conn.send((READY, summary if isinstance(summary, str) else None))
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
            conn.send((ROWS, [str(row) for row in rows]))
        except Exception as error:  # noqa: BLE001 - the parent decides about retries
            conn.send((ERROR, _one_line(error)))


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
