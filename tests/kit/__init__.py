"""The test kit: what many tests need from Kafka and from the pipeline's loops, written once.

- `tests.kit.kafka`: read a topic to its end, count its records, committed offsets, produce.
- `tests.kit.stages`: run a source or sink loop until a condition holds or in the background, a
  sink made of a function, and what a source would publish captured without Kafka.
- `tests.kit.load`: `sagesf load` killed by SIGKILL at a chosen checkpoint, as a crash stops it.
A component's parts from settings in hand: `sagesf.runner.Process.of(name, core, *settings)`.
"""
