"""sagesf core: configuration, Kafka I/O and serde, canonical helpers, errors, dead letters,
metrics and the command line. It imports no connector, processor or sandbox module."""

__version__ = "0.1.0"
