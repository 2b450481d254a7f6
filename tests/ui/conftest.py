"""The web console in a real browser: Debian's chromium driven by Playwright (its own browser
download cannot work here), one browser per test session, a fresh browser context per test.

`console` starts the console (uvicorn, on a free port) for a test module, on the session's real
broker and registry, with a user of each role; `shots` saves screenshots of a test under
test-output/ui/<test name>/ (a last one after the test, pass or fail), for a person to look at.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from console.app import create_app
from console.settings import ConsoleSettings
from console.users import ROLES, UserFile
from linking.config import LinkSettings
from sagesf.config import KafkaSettings, RegistrySettings
from sagesf.stages import StageOverride, StageSettings
from sandbox.processes import free_port

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "ui"
PASSWORD = "a long demo passphrase"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `apt-get install chromium` (the Makefile's DEB_PACKAGES)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Console:
    url: str
    settings: ConsoleSettings
    core: StageSettings

    def login(self, page: Page, name: str, *, here: bool = False) -> None:
        """Log `name` in, on the login page shown now when `here`."""
        if not here:
            page.goto(f"{self.url}/login")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def serve(app: object, port: int) -> Callable[[], None]:
    """Serve `app` on 127.0.0.1:`port` on a thread; returns the function that stops it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the console stopped at start-up"
        assert time.monotonic() < deadline, "the console did not start within 15 s"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop


@pytest.fixture(scope="module")
def console_factory(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Console]]:
    """Start a console with a user of each role (named as the role): `console_factory(stages=...,
    links=..., <ConsoleSettings field>=...)`; every console started is stopped at the module's end."""
    stops: list[Callable[[], None]] = []

    def start(
        stages: dict[str, StageOverride] | None = None, links: LinkSettings | None = None, **settings: object
    ) -> Console:
        home = tmp_path_factory.mktemp("console")
        values: dict[str, object] = {
            "session_secret": "a" * 48,
            "users_file": home / "users.json",
            "audit_log": home / "audit.jsonl",
            "kafka_timeout": 10,
            **settings,
        }
        console_settings = ConsoleSettings.model_validate(values)
        users = UserFile(console_settings.users_file)
        for role in ROLES:
            users.add(role, PASSWORD, [role])
        core = StageSettings(
            kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
            registry=RegistrySettings(url=schema_registry_url, auto_register=True),
            stages=stages or {},
        )
        port = free_port()
        stops.append(serve(create_app(console_settings, core, links or LinkSettings()), port))
        return Console(f"http://127.0.0.1:{port}", console_settings, core)

    yield start
    for stop in stops:
        stop()


class Shots:
    """Screenshots of one test, numbered in the order taken."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.taken = 0

    def __call__(self, name: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())  # the Replay button asks first
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shots(page: Page, request: pytest.FixtureRequest) -> Iterator[Shots]:
    folder = SHOTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    taken = Shots(page, folder)
    yield taken
    taken("end")
