"""`python -m sandbox.registry --bootstrap HOST:PORT --port N [--topic _schemas] [--host 127.0.0.1]`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from sandbox.registry.server import DEFAULT_TOPIC, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.registry",
        description="Confluent-compatible schema registry for the sandbox, stored in a Kafka topic.",
    )
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT")
    parser.add_argument("--port", type=int, default=8081, help="HTTP port (default 8081)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help=f"schemas topic (default {DEFAULT_TOPIC})")
    parser.add_argument(
        "--replication-factor", type=int, default=1, help="when creating the topic (default 1)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args.bootstrap, args.port, args.host, args.topic, args.replication_factor))


if __name__ == "__main__":
    main()
