"""The real entry script with faults injected by file name, for the fault suite only.

`init()`/`run()` are the project's own; a file whose name holds `exotic` makes the
decoder raise an exception type nobody lists, `killer` kills the worker process
while its mini-batch runs, `hang` blocks forever. Everything else is scored for real.
"""

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring import decoders, entry  # noqa: E402

_real_decode = decoders.decode_image


def _decode(path, **kwargs):
    name = Path(path).name
    if "exotic" in name:
        raise KeyError(f"unexpected chunk in {name}")
    if "killer" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "hang" in name:
        time.sleep(3600)
    return _real_decode(path, **kwargs)


decoders.decode_image = _decode  # the Pillow path every file of the CPU profile takes
init = entry.init
run = entry.run
