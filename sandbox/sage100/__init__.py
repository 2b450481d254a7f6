"""The sandbox Sage 100: a SQLite database reached through unixODBC, its seed data and a simulator.

`database.py` creates and seeds it, `simulator.py` makes Sage-side changes, `cli.py` is
`sagesf sandbox sage100 init|seed|simulate|status`.
"""

from sandbox.sage100.database import SandboxDatabase, connection_string, create_database, open_database, seed

__all__ = ["SandboxDatabase", "connection_string", "create_database", "open_database", "seed"]
