"""`python -m sandbox.salesforce --port N --data-dir DIR [--config FILE] [--host H] [--api-limit N]`.

Without --config the sandbox config in DIR/config.yaml is used, created with fresh secrets on the
first start (see config.py).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aiohttp import web

from sagesf.logs import configure_logging, register_secret
from sandbox.salesforce.app import create_app
from sandbox.salesforce.config import EmulatorConfig, write_sandbox_config

log = logging.getLogger("sandbox.salesforce")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.salesforce",
        description="Salesforce emulator for the sandbox: OAuth, REST, Bulk 2.0, SOQL, streaming.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="where the org's SQLite files live")
    parser.add_argument("--port", type=int, default=8443, help="HTTP port (default 8443)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--config", type=Path, help="YAML config (default: DATA_DIR/config.yaml, created)")
    parser.add_argument(
        "--metadata",
        type=Path,
        help="standard objects YAML (default: standard_objects.yaml beside this module)",
    )
    parser.add_argument(
        "--sfdx-project", type=Path, help="the sfdx project of the custom parts (default: salesforce/)"
    )
    parser.add_argument("--api-limit", type=int, help="daily API request limit (default 100000)")
    parser.add_argument("--base-url", help="instance_url in token responses (default http://HOST:PORT)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--access-log", action="store_true", help="log every request line")
    args = parser.parse_args(argv)

    configure_logging(args.log_level, component="salesforce-emulator")
    config_path = args.config or write_sandbox_config(args.data_dir)
    config = EmulatorConfig.load(
        config_path,
        data_dir=args.data_dir,
        port=args.port,
        host=args.host,
        metadata_path=args.metadata,
        sfdx_project=args.sfdx_project,
        api_daily_limit=args.api_limit,
        base_url=args.base_url,
    )
    for secret in config.secrets():
        register_secret(secret)
    app = create_app(config)
    log.info("Salesforce emulator on %s (data in %s)", config.instance_url, args.data_dir)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=logging.getLogger("aiohttp.access") if args.access_log else None,
        print=None,
    )


if __name__ == "__main__":
    main()
