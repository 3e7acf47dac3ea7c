"""The live view and its SDK in a real Chromium, against real gateways over a real NATS.

Each test opens ``/ui`` with a token in the URL's fragment and checks what a person would see,
and what the page's model holds (``window.frysView``): live state, events with positions,
presence, tensor heatmaps, control replies; a gateway crash under the page; refusals shown
as such and never retried; outages retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from frys.cli.demo_engine import start_demo_engine
from frys.client import connect
from frys.client.backend import Backend, Command
from frys.gateway.auth import mint_token
from frys.runtime.nats_process import NatsProcess
from tests.browser.conftest import ARTIFACTS, PageServer, View
from tests.conftest import SECRET, GatewayFactory, RunningGateway, token


@pytest.fixture
async def backend(nats_server: NatsProcess, prefix: str) -> AsyncIterator[Backend]:
    engine = await Backend.connect(nats_server.url, prefix=prefix, name="engine")
    yield engine
    await engine.close()


REFUSAL = "(e => !e.hidden && e.textContent)(document.querySelector('#refusal'))"
"""The refusal banner's text once it is shown."""


async def crash(gw: RunningGateway) -> None:
    """Stop a gateway as a crash would: no new connections, open ones cut without a close
    frame (the page sees 1006)."""
    if gw.listener is not None:
        await gw.listener.close()
    for site in list(gw.runner.sites):
        server = site._server
        if server is not None:
            server.close()
    for session in list(gw.gateway.sessions):
        session.writer.transport.abort()
    await asyncio.sleep(0)


async def test_live_view_shows_a_running_workflow(
    gateway: RunningGateway, nats_server: NatsProcess, prefix: str, view: View
) -> None:
    """Connect, subscribe, publish and request from the page, with the demo engine's
    traffic: state tree, events with positions, presence, collaboration, tensor heatmap,
    quality figures, gateway panel. Saves a screenshot of the view."""
    engine = await start_demo_engine(nats_server.url, gateway.url, SECRET, prefix=prefix)
    try:
        async with connect(gateway.url, token=token("observer")) as observer:
            notes = await observer.subscribe("wf:pipeline:events")
            await view.open(gateway.http, token=token("alice"), wf="pipeline", name="Alice")

            # Connected, to this gateway; subscribed to the workflow's channels.
            await view.until("window.frysView.client?.state === 'connected'")
            assert await view.text("#gw-id") == gateway.gateway.config.gateway_id
            assert await view.text("#who") == "alice"
            await view.until("document.querySelector('#state-tree').textContent.includes('stages')")
            await view.until("document.querySelectorAll('#events li').length >= 2")
            first = await view.js("document.querySelector('#events li').dataset.seq")
            assert int(first) >= 1

            # Presence: the agents and the page itself; collaboration between the agents.
            await view.until(
                "['planner', 'reviewer', 'Alice (alice)'].every(n => "
                "document.querySelector('#members').textContent.includes(n))"
            )
            await view.until("document.querySelector('#collab').textContent.includes('review')", 20)

            # Publish from the page: the note is stored, acked, and delivered to everyone.
            await view.page.fill("#note-text", "looks good")
            await view.page.click("#note button")
            while True:
                note = await notes.next(10)
                if isinstance(note.data, dict) and note.data.get("type") == "note":
                    break
            assert (note.data["text"], note.from_) == ("looks good", "alice")
            await view.until(
                f"document.querySelector('#events li[data-seq=\"{note.seq}\"]')"
                "?.textContent.includes('looks good')"
            )

            # Request → reply from the page's control button.
            await view.page.click("button[data-action=pause]")
            await view.until(
                "document.querySelector('#commands').textContent.includes('\"ok\":true')"
            )
            await view.until("document.querySelector('#state-tree').textContent.includes('paused')")

            # Tensor state: heatmap drawn, quality figures from the relay, message rate.
            await view.until("window.frysView.tensor(0)?.deltas > 2")
            await view.until("document.querySelectorAll('#stats tr').length >= 1", 10)
            assert "×" in await view.text("#stats")
            await view.until("Number(document.querySelector('#gw-rate').textContent) > 0")
            ARTIFACTS.mkdir(exist_ok=True)
            await view.page.screenshot(path=str(ARTIFACTS / "live-view.png"), full_page=True)
            # The token never reaches the server nor stays in the address bar.
            assert "token=" not in view.page.url
    finally:
        await engine.close()


async def test_heatmap_follows_deltas_and_equals_the_published_array(
    gateway: RunningGateway, backend: Backend, view: View
) -> None:
    rng = np.random.default_rng(3)
    field = rng.random((24, 32)).astype(np.float32)
    await backend.publish_tensor("wf:heat:state", field, stream=0)
    await view.open(gateway.http, token=token("alice"), wf="heat")
    await view.until("window.frysView.tensor(0) !== null")
    for step in range(12):
        row, col = divmod(step * 37 % field.size, field.shape[1])
        field = field.copy()
        field[row, col] = 2.0 + step  # the hottest cell, where the heatmap is brightest
        field[(row + 5) % field.shape[0], :] *= 0.5  # a row of changes: a denser delta
        await backend.publish_tensor("wf:heat:state", field, stream=0)
        shown = await view.until(
            "(() => { const t = window.frysView.tensor(0);"
            f" return t && t.data.some(v => v === {2.0 + step}) && t; }})()"
        )
        assert shown["dtype"] == "float32" and shown["shape"] == [24, 32]
        assert np.array_equal(np.array(shown["data"], np.float32).reshape(24, 32), field)
        # The hottest cell is drawn in the colour map's top colour.
        pixel = await view.js(
            "(() => { const c = document.querySelector('#heatmap');"
            f" const x = Math.floor(({col} + 0.5) * c.width / 32);"
            f" const y = Math.floor(({row} + 0.5) * c.height / 24);"
            " return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data); })()"
        )
        assert pixel == [253, 231, 37, 255]
    final = await view.js("window.frysView.tensor(0)")
    assert final["deltas"] >= 10, final  # the page followed deltas, not keyframes
    assert final["keyframes"] <= 2, final
    caption = await view.text("#tensor-caption")
    assert "float32 [24 × 32]" in caption


async def test_page_resumes_on_another_gateway_without_loss_or_duplicates(
    gateways: GatewayFactory, backend: Backend, page_server: PageServer, view: View
) -> None:
    first = await gateways(allowed_origins=(page_server.origin,))
    second = await gateways(allowed_origins=(page_server.origin,))
    await view.open(
        page_server.origin, token=token("alice"), gw=f"{first.url},{second.url}", wf="kill"
    )
    await view.until("window.frysView.client?.state === 'connected'")
    await view.until("window.frysView.model.subs.length === 4")
    total, crash_at = 120, 40
    for n in range(total):
        await backend.publish_event("kill", {"n": n}, mid=f"kill-{n}")
        if n == crash_at:
            await view.until(f"window.frysView.events('kill').length > {crash_at // 2}")
            await crash(first)
        await asyncio.sleep(0.01)
    events = await view.until(
        "(() => { const e = window.frysView.events('kill');"
        f" return e.length >= {total} && e; }})()",
        30,
    )
    assert [e["data"]["n"] for e in events] == list(range(total))
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "positions strictly increase: nothing twice"
    assert not any(e["gap"] for e in events)
    assert await view.js("window.frysView.client.reconnects") == 1
    assert await view.text("#gw-id") == second.gateway.config.gateway_id
    assert await view.js("document.querySelectorAll('#events li').length") == total


async def test_outcome_of_a_command_is_shown_after_a_reconnect(
    gateways: GatewayFactory, backend: Backend, page_server: PageServer, view: View
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handle(command: Command) -> Any:
        started.set()
        await release.wait()  # still executing when the gateway dies
        return {"ok": True, "action": command.data["action"], "run": 2}

    first = await gateways(allowed_origins=(page_server.origin,))
    second = await gateways(allowed_origins=(page_server.origin,))
    await backend.serve_control(handle)  # the gateways made the outcome bucket
    await backend.nc.flush()
    await view.open(
        page_server.origin, token=token("alice"), gw=f"{first.url},{second.url}", wf="ctl"
    )
    await view.until("window.frysView.model.subs.length === 4")
    await view.page.click("button[data-action=retry]")
    await asyncio.wait_for(started.wait(), 10)
    await crash(first)
    await view.until(
        f"document.querySelector('#gw-id').textContent === '{second.gateway.config.gateway_id}'"
    )
    release.set()
    outcome = await view.until(
        "document.querySelector('#commands .outcome')?.textContent", timeout=15
    )
    assert '"action":"retry"' in outcome and '"run":2' in outcome
    reply = await view.text("#commands tr td:nth-child(3)")
    assert reply == outcome, "the re-sent request got the recorded reply"
    assert backend.executed == 1, "executed once, though sent twice"


async def test_refused_token_is_reported_and_not_retried(
    gateways: GatewayFactory, page_server: PageServer, view: View
) -> None:
    gw = await gateways(allowed_origins=(page_server.origin,))
    forged = mint_token("another-secret-0123456789abcdef-xyz", "mallory", {"wf:*:*": ["subscribe"]})
    await view.open(page_server.origin, token=forged, gw=gw.url, wf="x")
    banner = await view.until(REFUSAL)
    assert "4401" in banner and "bad signature" in banner
    await asyncio.sleep(2.0)  # backoff would have tried several times by now
    assert await view.js("window.__sockets.length") == 1
    assert await view.js("window.frysView.client.attempts") == 1
    assert await view.text("#conn-state") == "refused (4401)"
    assert await view.page.locator("#signin").is_visible(), "the page offers to sign in again"


async def test_refused_origin_is_reported_and_not_retried(
    gateway: RunningGateway,
    page_server: PageServer,
    view: View,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="frys.gateway.server")
    # The page's origin is not among the gateway's allowed origins (https://designer.example).
    await view.open(page_server.origin, token=token("alice"), gw=gateway.url, wf="x")
    banner = await view.until(REFUSAL)
    assert "4403" in banner and "origin not allowed" in banner
    await asyncio.sleep(2.0)
    assert await view.js("window.__sockets.length") == 1
    assert await view.js("window.frysView.client.attempts") == 1
    refusals = [r for r in caplog.records if "refused with close 4403" in r.getMessage()]
    assert len(refusals) == 1, "the gateway saw one attempt"
    assert gateway.gateway.metrics.connections_total == 0, "no session was made"


async def test_an_outage_is_retried(page_server: PageServer, view: View) -> None:
    """Nothing listening (close 1006): an outage, not a refusal. The page keeps trying."""
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await view.open(page_server.origin, token=token("alice"), gw=f"ws://127.0.0.1:{port}/ws")
    await view.until("window.__sockets.length >= 4", timeout=10)
    assert await view.js("document.querySelector('#refusal').hidden")
    assert await view.text("#conn-state") == "connecting"
