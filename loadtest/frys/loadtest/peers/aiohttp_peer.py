"""A plain aiohttp WebSocket broadcast server (benchmark peer).

Protocol (``plain`` dialect): text ``hello`` → ``ok``, ``sub:CHANNEL`` → ``ok``, ``ping`` →
``pong``; a binary frame ``[len(ch)][ch][payload]`` is broadcast as ``payload`` to every
subscriber of ``ch``.

``--mode send`` writes to each subscriber with ``await ws.send_bytes(payload)`` (what most
aiohttp applications do); ``--mode once`` builds the WebSocket frame once and writes the
same bytes to every subscriber's transport (what Frys does, without its per-tick batching).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import defaultdict

from aiohttp import WSMsgType, web

from frys.gateway.wsframe import binary_frame

Rooms = defaultdict[str, set[web.WebSocketResponse]]
ROOMS: web.AppKey[Rooms] = web.AppKey("rooms")
MODE: web.AppKey[str] = web.AppKey("mode")


async def broadcast(app: web.Application, data: bytes) -> None:
    n = data[0]
    room = app[ROOMS].get(data[1 : 1 + n].decode())
    if not room:
        return
    payload = data[1 + n :]
    if app[MODE] == "once":
        frame = binary_frame(payload)
        for ws in room:
            writer = ws._writer
            transport = writer.transport if writer is not None else None
            if transport is not None and not transport.is_closing():
                transport.write(frame)
        return
    for ws in list(room):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(payload)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    joined: list[str] = []
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await broadcast(app, msg.data)
            elif msg.type is WSMsgType.TEXT:
                text = msg.data
                if text.startswith("sub:"):
                    app[ROOMS][text[4:]].add(ws)
                    joined.append(text[4:])
                    await ws.send_str("ok")
                elif text == "ping":
                    await ws.send_str("pong")
                elif text == "hello":
                    await ws.send_str("ok")
    finally:
        for ch in joined:
            app[ROOMS][ch].discard(ws)
    return ws


def build_app(mode: str) -> web.Application:
    app = web.Application()
    rooms: Rooms = defaultdict(set)
    app[ROOMS] = rooms
    app[MODE] = mode
    app.router.add_get("/ws", ws_handler)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("send", "once"), default="send")
    args = parser.parse_args(argv)
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        build_app(args.mode),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
