"""A schema registry that refuses our credentials stops the process (a StartupError, exit 2) instead
of being waited for like a registry that is down.

The sandbox registry has no authentication, so a plain HTTP server that answers every request 401
or 403 as Confluent's does stands in for one that checks credentials.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from sagesf.errors import AuthenticationError, StartupError
from sagesf.serde import AvroSerde


def refusing_registry(status: int) -> ThreadingHTTPServer:
    class Refuse(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            body = json.dumps({"error_code": status, "message": "Unauthorized"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _refuse

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Refuse)


@pytest.fixture(params=[401, 403])
def registry_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server = refusing_registry(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("auto_register", [True, False])
def test_refused_credentials_are_a_startup_error_naming_the_settings(
    registry_url: str, auto_register: bool
) -> None:
    client = SchemaRegistryClient({"url": registry_url, "basic.auth.user.info": "someone:wrong-password"})
    serde = AvroSerde.canonical(client, "SageCommand", "sage.commands.v1", auto_register=auto_register)
    with pytest.raises(AuthenticationError) as info:
        serde.schema_id  # noqa: B018 - asks the registry
    assert isinstance(info.value, StartupError)
    assert info.value.line().startswith("SAGESF_REGISTRY__BASIC_AUTH_USER")
    assert "wrong-password" not in info.value.line()
