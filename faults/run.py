"""`make faults`: bad input, odd names, killed processes, a dead blob store, changed months; one table row each.

Every case runs what users run — the CLI (`python -m scoring score`), the local
runner with the real entry script (faults injected by file name, `faults/entry.py`),
or the local backend's job through the operators on Azurite — and is judged from
the CSVs it wrote: every input in exactly one file (missing 0, duplicated 0), no
good image among the errors (collateral 0), bad ones listed with a reason, and the
exit the case expects. Prints the table; exits 1 if any case fails.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from faults.cases import CASES
from faults.harness import Row, Suite, make_model, print_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: all): {', '.join(CASES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    from devstack import azurite

    # A SIGTERM (a timeout, a CI cancel) unwinds like an exception, so that the finally below stops Azurite.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        root = Path(scratch)
        suite = Suite(root=root, model_dir=make_model(root))
        location = root / "azurite"
        service = azurite.start(location, port=azurite.free_port())
        suite.connection_string, suite.blob_endpoint = service.connection_string, service.blob_endpoint
        try:
            for name in args.cases or CASES:
                started = time.monotonic()
                try:
                    row = CASES[name](suite)
                except Exception as error:  # noqa: BLE001 - a case that breaks is a failed row, not a dead suite
                    traceback.print_exc()
                    row = Row(name, "?", exit=f"{type(error).__name__}", note=str(error)[:90])
                row.note = f"{row.note} ({time.monotonic() - started:.0f}s)".strip()
                suite.rows.append(row)
                print(f"{'PASS' if row.passed else 'FAIL'} {row.case}", flush=True)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the stop short
            azurite.stop(location)
        print()
        print_table(suite.rows)
    return 0 if all(row.passed for row in suite.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
