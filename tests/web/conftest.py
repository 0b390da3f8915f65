"""The browser tests' set-up: Debian's chromium driven by Playwright (never `playwright install`), and a
simulated camera for the page's daemons. Without chromium a test that takes the browser skips, unless
VI_STREAM_REQUIRE_BROWSER is set (CI), where a missing browser fails."""
from __future__ import annotations

import os

import pytest

from vi_stream.evaluation.simulate import Simulator

from ..helpers.daemon import running_daemon

CHROMIUM = os.environ.get("VI_STREAM_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("VI_STREAM_REQUIRE_BROWSER"):
            pytest.fail(f"no chromium at {CHROMIUM}, and VI_STREAM_REQUIRE_BROWSER is set")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    "--disable-background-networking", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def camera():
    sim = Simulator(0, "CAM", fps=4.0, shape=(512, 512), pool=6, defect_rate=0.5, seed=11)
    port = sim.start()
    sim.run_in_thread()
    yield port
    sim.close()


@pytest.fixture(scope="module")
def daemon(model, camera):
    """The page's daemon: the test model on the simulated camera, records stored in 128 px tiles (a module may
    define its own ``daemon``)."""
    with running_daemon(model, camera, store_tile=128) as (d, _ctx):
        yield d


@pytest.fixture
def page(browser, daemon):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.base = f"http://127.0.0.1:{daemon.rest_port}"
    yield pg
    context.close()
    assert not errors, errors
