"""The web console (`sagesf console`): mappings, dead letters, traces, links and processes in a
browser, behind a login with roles, every change recorded in an audit log.

It sits above the core, the processors and the linker and imports no connector (pyproject.toml
[tool.importlinter]); the sandbox sits above it.
"""
