"""The test kit: what many tests need from Kafka and from the pipeline's loops, written once.

- `tests.kit.kafka`: read a topic to its end, count its records, committed offsets, produce.
- `tests.kit.stages`: run a source or sink loop until a condition holds or in the background,
  capture what a source would publish without Kafka, and build a component's `Process` from
  settings in hand.
"""
