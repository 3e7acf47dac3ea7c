"""The event loop every Frys process runs on."""

from __future__ import annotations

import asyncio
import sys


def install_uvloop() -> None:
    """Run asyncio on uvloop where it exists: the gateway's fan-out, the router and the
    load tool spend most of their time in the loop, and uvloop's is several times cheaper
    per callback and per socket write. Windows keeps the default loop (no uvloop there)."""
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
