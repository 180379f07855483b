"""An entry script whose behaviour the file names choose, for the runner's fault tests.

`raise*` raises in run(), `die*` kills the worker, `hang*` never returns,
`flaky*` kills the worker on its first try only, `bad*` comes back as an error
row, a name with `slow` takes FAULT_ENTRY_SLOW_S seconds (default 1), init() takes FAULT_ENTRY_INIT_S (default 0),
or FAULT_ENTRY_LATER_INIT_S in every worker but the first to start. Every init() and run() call is logged under --state.
"""

import argparse
import hashlib
import os
import time
from pathlib import Path

from scoring.items import image_id
from scoring.model_format import locate
from scoring.rows import error_row, scored_row

_args = None
_digest = None  # of the job's model copy, as a real entry's rows carry it


def init():
    global _args, _digest
    parser = argparse.ArgumentParser()
    parser.add_argument("--input_root")
    parser.add_argument("--model_dir")
    parser.add_argument("--state")
    parser.add_argument("--fail_init", action="store_true")
    _args, _ = parser.parse_known_args()
    if _args.fail_init:
        raise RuntimeError("model folder is missing")
    seconds = os.environ.get("FAULT_ENTRY_INIT_S", "0")
    if "FAULT_ENTRY_LATER_INIT_S" in os.environ:
        try:
            os.close(os.open(Path(_args.state) / "first-init", os.O_CREAT | os.O_EXCL))  # the first worker only
        except FileExistsError:
            seconds = os.environ["FAULT_ENTRY_LATER_INIT_S"]
    time.sleep(float(seconds))  # a slow model load
    if _args.model_dir:
        _digest = hashlib.sha256(locate(Path(_args.model_dir)).path.read_bytes()).hexdigest()
    with open(Path(_args.state) / "inits.log", "a") as log:
        log.write(f"{os.getpid()}\n")


def run(mini_batch):
    rows = []
    with open(Path(_args.state) / "runs.log", "a") as log:
        log.write(f"{os.getpid()} {' '.join(Path(p).name for p in mini_batch)}\n")
    for path in mini_batch:
        name = Path(path).name
        if name.startswith("raise"):
            raise ValueError(f"cannot handle {name}")
        if name.startswith("die"):
            os._exit(3)
        if name.startswith("hang"):
            time.sleep(600)
        if "slow" in name:
            time.sleep(float(os.environ.get("FAULT_ENTRY_SLOW_S", "1")))
        if name.startswith("flaky"):
            marker = Path(_args.state) / f"tried-{name}"
            if not marker.exists():
                marker.touch()
                os._exit(9)
        item = image_id(path, _args.input_root)
        if name.startswith("bad"):
            rows.append(error_row(item, "corrupt", f"{name} is broken"))
        else:
            rows.append(scored_row(item, "circle", 0.9, model_name="m", model_version="1", month="202610",
                                   model_digest=_digest))
    return rows
