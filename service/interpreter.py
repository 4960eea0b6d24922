"""How every pm-order process sets up the Python interpreter it runs in."""

from __future__ import annotations

import gc
import sys
from typing import Final

# How long a thread may hold the GIL while another waits for it (Python's default
# is 5 ms). A request's way through a server crosses threads several times (the
# event loop, the committer, the store's pool, the projector's pages), and each
# crossing may wait that long for whichever thread is running Python: measured
# here, 0.5 ms cut the save-to-view lag at 200 orders/s from p50 18 / p99 69 ms
# to p50 12 / p99 29 ms (bench/README.md).
SWITCH_INTERVAL_SECONDS: Final = 0.0005


def tune() -> None:
    """Set up the interpreter for a long-running service: short GIL turns, and
    what is loaded so far (modules, classes, constants: objects that live as
    long as the process) moved out of the garbage collector's sight.

    Each full collection otherwise walks every one of those objects again. The
    projector makes many short-lived rows per page, and collections follow them:
    frozen, a catch-up took about 15 to 20% less CPU (bench/README.md). Freezing
    is also what keeps a forked worker's copy of them shared with its parent."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.freeze()
