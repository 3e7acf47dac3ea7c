"""A stand-in workflow engine for ``frys-ws dev``: realistic traffic to try Frys and its live
view with, before a real engine is wired in.

- Workflow ``pipeline`` steps through the stages of a run, publishing its state (last value
  wins) and an event per step; now and then a stage fails and waits for ``retry``.
- Control commands (``pause``, ``resume``, ``cancel``, ``retry``) are served for every
  workflow, each at most once per command id (the backend helper records outcomes); on
  ``pipeline`` they steer the run.
- A tensor state (a 32 × 32 float32 field with a moving hot spot) is published on the
  workflow's state channel as tensor frames: a keyframe, then sparse deltas.
- Two agents, ``planner`` and ``reviewer``, connect over WebSockets like any client (so they
  are present in the workflow) and exchange collaboration messages about the current stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry.sdk.trace import TracerProvider

from frys.client import Client, connect
from frys.client.backend import Backend, Command
from frys.gateway.auth import mint_token
from frys.shared.protocol.subjects import DEFAULT_PREFIX

log = logging.getLogger("frys.cli.demo")

DEMO_WORKFLOW = "pipeline"
STAGES = ("ingest", "validate", "transform", "train", "evaluate", "publish")
FIELD_SIZE = 32


@dataclass
class Run:
    """The demo workflow's run: what its state channel shows."""

    workflow: str
    number: int = 1
    status: str = "running"
    stage: int = 0
    progress: float = 0.0
    rows: int = 0
    loss: float = 1.0
    stages: list[str] = field(default_factory=lambda: ["pending"] * len(STAGES))

    def snapshot(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "run": self.number,
            "status": self.status,
            "stage": STAGES[self.stage],
            "progress": round(self.progress, 3),
            "stages": [{"name": n, "status": s} for n, s in zip(STAGES, self.stages, strict=True)],
            "metrics": {"rows": self.rows, "loss": round(self.loss, 4)},
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def restart(self) -> None:
        self.number += 1
        self.status, self.stage, self.progress = "running", 0, 0.0
        self.rows, self.loss = 0, 1.0
        self.stages = ["pending"] * len(STAGES)


class DemoEngine:
    """The demo engine's parts; :meth:`close` stops them all."""

    def __init__(self, backend: Backend, workflow: str) -> None:
        self.backend = backend
        self.run = Run(workflow)
        self.agents: list[Client] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self._field = np.zeros((FIELD_SIZE, FIELD_SIZE), np.float32)

    def spawn(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``work`` in a loop until closed; a failure is logged and the loop goes on."""

        async def forever() -> None:
            while True:
                try:
                    await work()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("demo %s failed: %s", what, exc)
                    await asyncio.sleep(1.0)

        task = asyncio.get_running_loop().create_task(forever(), name=f"demo {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await agent.close()
        await self.backend.close()

    # --- control ----------------------------------------------------------------------
    async def handle(self, command: Command) -> Any:
        """Every workflow answers; ``pipeline`` also changes its run."""
        action = command.data.get("action") if isinstance(command.data, dict) else command.data
        run = self.run
        if command.workflow == run.workflow and isinstance(action, str):
            self._steer(action)
            await self.backend.publish_state(run.workflow, run.snapshot())
        await self.backend.publish_event(
            command.workflow,
            {
                "type": "command",
                "action": action,
                "by": command.sender,
                "workflow": command.workflow,
            },
        )
        return {"ok": True, "action": action, "workflow": command.workflow}

    def _steer(self, action: str) -> None:
        run = self.run
        if action == "pause" and run.status == "running":
            run.status = "paused"
        elif action == "resume" and run.status == "paused":
            run.status = "running"
        elif action == "cancel" and run.status in ("running", "paused", "failed"):
            run.status = "cancelled"
            run.stages[run.stage] = "cancelled"
        elif action == "retry" and run.status == "failed":
            run.status, run.progress = "running", 0.0
            run.stages[run.stage] = "running"
        elif action in ("retry", "resume") and run.status in ("cancelled", "done"):
            run.restart()

    # --- the workflow -----------------------------------------------------------------
    async def step(self) -> None:
        """One tick of the run: progress, stage changes, an occasional failure."""
        await asyncio.sleep(1.0)
        run, rng, backend = self.run, self._rng, self.backend
        if run.status == "done":
            await asyncio.sleep(3.0)
            run.restart()
            await backend.publish_event(run.workflow, {"type": "run.started", "run": run.number})
        if run.status != "running":
            await backend.publish_state(run.workflow, run.snapshot())
            return
        run.stages[run.stage] = "running"
        run.progress = min(1.0, run.progress + rng.uniform(0.12, 0.3))
        run.rows += rng.randint(800, 2400)
        run.loss = max(0.02, run.loss * rng.uniform(0.9, 0.99))
        stage = STAGES[run.stage]
        if run.progress < 1.0 and rng.random() < 0.03:
            run.status = run.stages[run.stage] = "failed"
            await backend.publish_event(
                run.workflow,
                {"type": "stage.failed", "stage": stage, "error": "worker lost", "run": run.number},
            )
        elif run.progress >= 1.0:
            run.stages[run.stage] = "done"
            await backend.publish_event(
                run.workflow, {"type": "stage.done", "stage": stage, "rows": run.rows}
            )
            if run.stage + 1 < len(STAGES):
                run.stage, run.progress = run.stage + 1, 0.0
                run.stages[run.stage] = "running"
                await backend.publish_event(
                    run.workflow, {"type": "stage.started", "stage": STAGES[run.stage]}
                )
            else:
                run.status = "done"
                await backend.publish_event(run.workflow, {"type": "run.done", "run": run.number})
        else:
            await backend.publish_event(
                run.workflow,
                {"type": "progress", "stage": stage, "progress": round(run.progress, 2)},
            )
        await backend.publish_state(run.workflow, run.snapshot())

    async def heat(self) -> None:
        """The tensor state: a hot spot circling the field, cooling behind it. Only the
        cells near the spot change, so most frames are small sparse deltas."""
        await asyncio.sleep(0.2)
        t = time.monotonic() / 4.0
        cx = FIELD_SIZE / 2 + FIELD_SIZE / 3 * np.cos(t)
        cy = FIELD_SIZE / 2 + FIELD_SIZE / 3 * np.sin(1.3 * t)
        self._field = _heated(self._field, cx, cy)
        await self.backend.publish_tensor(f"wf:{self.run.workflow}:state", self._field, stream=0)

    async def agents_talk(self, planner: Client, reviewer: Client) -> None:
        await asyncio.sleep(self._rng.uniform(2.0, 4.0))
        run = self.run
        stage = STAGES[run.stage]
        channel = f"wf:{run.workflow}:collab"
        await planner.publish(
            channel,
            {
                "type": "proposal",
                "stage": stage,
                "text": f"{stage}: run {run.number} at {run.progress:.0%}, batch size "
                f"{self._rng.choice((256, 512, 1024))}",
            },
        )
        await asyncio.sleep(self._rng.uniform(0.5, 1.5))
        verdict = "approve" if run.status == "running" else f"hold ({run.status})"
        await reviewer.publish(channel, {"type": "review", "stage": stage, "verdict": verdict})


def _heated(field: npt.NDArray[np.float32], cx: float, cy: float) -> npt.NDArray[np.float32]:
    out = field.copy()
    y0, y1 = max(0, int(cy) - 5), min(FIELD_SIZE, int(cy) + 6)
    x0, x1 = max(0, int(cx) - 5), min(FIELD_SIZE, int(cx) + 6)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    spot = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 6.0).astype(np.float32)
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = np.round(np.maximum(region * 0.9, spot), 3)
    return out


async def start_demo_engine(
    nats_url: str,
    gateway_url: str | None = None,
    jwt_secret: str | None = None,
    *,
    workflow: str = DEMO_WORKFLOW,
    prefix: str = DEFAULT_PREFIX,
    tracer_provider: TracerProvider | None = None,
) -> DemoEngine:
    """Start the engine on NATS (subjects under ``prefix``); with a gateway URL and its JWT
    secret, the two agents too. With a tracer provider, the commands it serves are spans
    (children of the gateway's request spans), so a trace in dev shows the engine too."""
    backend = await Backend.connect(
        nats_url, prefix=prefix, name="demo-engine", tracer_provider=tracer_provider
    )
    engine = DemoEngine(backend, workflow)
    await backend.serve_control(engine.handle)
    await backend.publish_state(workflow, engine.run.snapshot())
    await backend.publish_event(workflow, {"type": "run.started", "run": engine.run.number})
    engine.spawn(engine.step, "workflow")
    engine.spawn(engine.heat, "tensor")
    if gateway_url is not None and jwt_secret is not None:
        grants = {f"wf:{workflow}:*": ["subscribe", "publish"]}
        for name in ("planner", "reviewer"):
            token = mint_token(jwt_secret, name, grants, ttl_s=7 * 86400, kind="agent")
            agent = await connect(gateway_url, token=token, name=name, caps=("plan",))
            await agent.subscribe(f"wf:{workflow}:collab")
            engine.agents.append(agent)
        planner, reviewer = engine.agents
        engine.spawn(lambda: engine.agents_talk(planner, reviewer), "agents")
    return engine
