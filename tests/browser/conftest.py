"""A real Chromium for the browser tests, driven by Playwright, and a page server on loopback.

Chromium comes from the system (Debian's ``chromium``), never downloaded by Playwright; each
test gets a fresh, empty profile. The tests fail, not skip, when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from frys.gateway.webroot import sdk_file, ui_file, ui_page

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"

COUNT_SOCKETS = """
window.__sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    window.__sockets.push(String(url));
  }
};
"""
"""Counts every WebSocket the page opens, beneath the SDK."""


def chromium_path() -> str:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "Chromium is required for the browser tests: apt-get update && apt-get install -y chromium"
    )


@dataclass
class View:
    """One browser page and what it reported."""

    page: Any
    errors: list[str] = field(default_factory=list)

    async def open(self, base: str, **fragment: str) -> None:
        """Open the live view at ``base`` (``http://host:port``) with fragment parameters."""
        query = "&".join(f"{k}={v}" for k, v in fragment.items())
        await self.page.goto(f"{base}/ui#{query}")

    async def js(self, expression: str) -> Any:
        return await self.page.evaluate(expression)

    async def until(self, expression: str, timeout: float = 15.0) -> Any:
        """Wait until ``expression`` is truthy in the page; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.page.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {timeout} s: {expression}")
            await asyncio.sleep(0.05)

    async def text(self, selector: str) -> str:
        return str(await self.page.locator(selector).inner_text())


ViewFactory = Callable[[], Any]


@pytest.fixture
async def view(tmp_path: Path) -> AsyncIterator[View]:
    """A fresh headless Chromium with an empty profile and one page."""
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is required for the browser tests: pip install -e '.[dev]'")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 900},
        )
        try:
            await context.add_init_script(COUNT_SOCKETS)
            page = context.pages[0] if context.pages else await context.new_page()
            opened = View(page)
            page.on("pageerror", lambda error: opened.errors.append(str(error)))
            yield opened
            assert opened.errors == [], opened.errors
        finally:
            await context.close()


@dataclass
class PageServer:
    """Serves the view and the SDK from its own origin, as a web server in front of a
    designer would: the page is then cross-origin to every gateway."""

    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def page_server() -> AsyncIterator[PageServer]:
    app = web.Application()
    app.router.add_get("/sdk/{path:.+}", sdk_file)
    app.router.add_get("/ui", ui_page)
    app.router.add_get("/ui/{path:.+}", ui_file)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield PageServer(port)
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
