"""Shared fixtures: the built site, a loopback server for it, and headless system Chromium.

Browser tests use the system Chromium (``/usr/bin/chromium``); no browser is ever
downloaded. Without Chromium they skip with a message, except under ``CI=true``,
where they fail, since CI must install it (``.ci/run`` does).
"""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _missing(what):
    """Fail under CI (it must provide ``what``); skip elsewhere, saying how to get it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI must provide it: see .ci/run)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def grading_sandbox():
    """Bubblewrap sandboxes for the grading tests (.ci/run installs bubblewrap); fail without them under CI."""
    from coursetools import sandbox

    ok, why = sandbox.available()
    if not ok:
        _missing(f"no sandbox to grade in: {why}")


def chromium_path():
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def site_dir():
    """The built site; build it with ``make book`` (``make test`` does)."""
    if not (SITE / "index.html").exists():
        _missing(f"no built site at {SITE}: run `make book` first")
    return SITE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def base_url(site_dir):
    """A loopback HTTP server for the built site; yields its base URL (ends with '/')."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium, driven by Playwright."""
    path = chromium_path()
    if not Path(path).exists():
        _missing(f"Chromium not found at {path}: `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class OfflinePage:
    """A page whose requests to any non-loopback host are blocked and recorded."""

    def __init__(self, context):
        self.context = context
        self.page = context.new_page()
        self.external_requests = []
        self.console_errors = []
        self.page_errors = []
        self.http_errors = []  # responses with status >= 400 (a missing favicon, a broken link)
        self.page.on("console", self._on_console)
        self.page.on("response", lambda r: r.status >= 400 and self.http_errors.append(f"{r.status} {r.url}"))
        self.page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        context.route("**/*", self._route)

    def _on_console(self, msg):
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def _route(self, route):
        url = route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("data", "blob", "about") or parsed.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.external_requests.append(url)
            route.abort()

    def goto(self, url, **kwargs):
        return self.page.goto(url, wait_until="networkidle", **kwargs)


@pytest.fixture
def offline_page(browser):
    """A fresh browser context (empty storage) with the network cut except loopback."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = OfflinePage(context)
    yield page
    context.close()
