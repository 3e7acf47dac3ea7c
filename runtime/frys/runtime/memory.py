"""Giving memory back to the system after a burst of releases.

A gateway that served and then dropped thousands of subscriptions or large frames has
freed the objects, but the process keeps the memory: cyclic garbage waits for a full
collection (which the gateway makes rare, since a full collection over many sessions
pauses the event loop), and glibc keeps freed heap pages for reuse. :func:`reclaim`
collects and asks the C allocator to return free pages; it is meant for after a large
release, not for every tick.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

_trim = None
if sys.platform == "linux":
    _libc_name = ctypes.util.find_library("c")
    if _libc_name:
        try:
            _trim = ctypes.CDLL(_libc_name).malloc_trim
        except (OSError, AttributeError):
            _trim = None


def reclaim() -> int:
    """Collect cyclic garbage and return free heap pages to the system (glibc); the number
    of objects collected."""
    collected = gc.collect()
    if _trim is not None:
        _trim(0)
    return collected
