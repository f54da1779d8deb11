"""A shorter GIL hand-over interval for the processes that mostly wait on the kernel.

A thread coming back from a system call (a pipe read, a mount, a Redis reply)
needs the GIL again, and while another thread runs Python code it waits for
the holder to let go — after ``sys.getswitchinterval()``, 5 ms by default. The
worker runs a container start in one thread while others apply events to the
projection and publish them; a start makes a hundred-odd such calls, so with
the default a busy neighbour thread added 50–150 ms to ``docker run`` through
the API (``bench/bench_api.py``: 175–290 ms median, 125–140 ms with 0.5 ms).
The CPU-bound threads lose almost nothing: they are switched a little more often.
"""

from __future__ import annotations

import sys

#: Seconds a thread may hold the GIL while another one waits for it.
SWITCH_INTERVAL = 0.0005


def favor_waiting_threads() -> None:
    """Let a thread back from the kernel run within half a millisecond."""
    sys.setswitchinterval(SWITCH_INTERVAL)
