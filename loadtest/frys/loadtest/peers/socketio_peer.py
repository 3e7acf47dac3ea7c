"""A python-socketio server in aiohttp mode (benchmark peer).

Events: ``join(ch)`` (ack) puts the client in room ``ch``; ``echo`` (ack) is a round trip;
``pub(ch, data)`` emits ``m(data)`` to the room. WebSocket transport only, no HTTP
long-polling. The Engine.IO heartbeat is stretched to ``--ping-interval-s`` so that a
benchmark counting bytes does not see heartbeat packets mid-run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import socketio
from aiohttp import web


def build_app(ping_interval_s: float) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        transports=["websocket"],
        ping_interval=ping_interval_s,
        ping_timeout=ping_interval_s,
        cors_allowed_origins="*",
        http_compression=False,
        max_http_buffer_size=1 << 20,
    )
    app = web.Application()
    sio.attach(app)

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, ch: str) -> bool:
        await sio.enter_room(sid, ch)
        return True

    @sio.on("echo")  # type: ignore[untyped-decorator]
    async def echo(sid: str) -> bool:
        return True

    @sio.on("pub")  # type: ignore[untyped-decorator]
    async def pub(sid: str, ch: str, data: str) -> None:
        await sio.emit("m", data, room=ch)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        build_app(args.ping_interval_s),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
