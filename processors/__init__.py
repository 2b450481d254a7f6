"""The sagesf processors: one faust-streaming app (`sagesf run processors`).

Modules: app.py (the faust app: agents, tables, timers, outputs), orders.py /
customer_directory.py / customers.py / status.py / inventory.py / credit.py (what each agent does
with a record), state.py (tables and step shapes), tables.py (the shared changelog-backed
tables), commands.py (the command records and their deterministic IDs), mapping_model.py /
mapping_files.py / mapping_checks.py / metadata.py / addresses.py (mappings/*.yaml: the models,
reading the files, checks against the schemas and the systems' metadata), config.py
(SAGESF_PROCESSORS__*), metrics.py, cli.py (`sagesf mappings check`). Processors import no
connector and no sandbox module: they meet the connectors only through Kafka topics and the
canonical schemas.
"""
