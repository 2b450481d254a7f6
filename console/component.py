"""The `console` component (`sagesf run console`, `sagesf console serve`): the web console served
by uvicorn, with /metrics and /healthz on the metrics port like every process."""

from __future__ import annotations

import logging
import threading

import uvicorn

from console.app import create_app
from console.settings import ConsoleSettings
from sagesf.runner import Component, Process

__all__ = ["CONSOLE", "ConsoleServer"]

log = logging.getLogger(__name__)


class ConsoleServer:
    """Serves the app on its own thread (so uvicorn installs no signal handlers: the runner owns
    SIGTERM) until `stop` is set, then lets open requests finish."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server

    def run(self, stop: threading.Event) -> None:
        thread = threading.Thread(target=self.server.run, name="console-http")
        thread.start()
        while not stop.wait(0.5) and thread.is_alive():
            pass
        self.server.should_exit = True
        thread.join()
        if not stop.is_set():
            raise RuntimeError("the console's web server stopped by itself")


def build(process: Process) -> ConsoleServer:
    settings = process.settings(ConsoleSettings)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    log.info("console on http://%s:%d", settings.host, settings.port)
    return ConsoleServer(uvicorn.Server(config))


CONSOLE = Component(
    name="console",
    summary="the web console: mappings, dead letters, traces, links, processes, audit",
    build=build,
    settings=(ConsoleSettings,),
)
