"""A stand-in workflow engine for ``frys-ws dev``: answers control commands so that the
request → reply path can be tried before a real engine is wired in."""

from __future__ import annotations

from typing import Any

from frys.client.backend import Backend, Command


async def start_demo_engine(nats_url: str) -> Backend:
    backend = await Backend.connect(nats_url, name="demo-engine")

    async def handle(command: Command) -> Any:
        action = command.data.get("action") if isinstance(command.data, dict) else command.data
        await backend.publish_event(
            command.workflow, {"type": "command", "action": action, "by": command.sender}
        )
        return {"ok": True, "action": action, "workflow": command.workflow}

    await backend.serve_control(handle)
    return backend
