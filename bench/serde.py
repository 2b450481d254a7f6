"""How fast sagesf.serde encodes and decodes a canonical SalesOrder, against raw fastavro.

`python bench/serde.py [--seconds 0.5] [--repeats 5]` prints records/s on one thread for:
our AvroSerde encode/decode (Confluent wire format, through an in-process mock registry, so no
network is measured), raw fastavro schemaless encode/decode of the same record and schema (the
floor any Avro serde pays), and confluent-kafka's AvroSerializer/AvroDeserializer for reference;
then the ratios ours/raw, which the issue wants at 0.8 or more. Each figure is the best of
`--repeats` timed runs, runs of the different codecs interleaved, so that load from other
processes on the machine skews them alike; the machine's core count is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from io import BytesIO

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import schemaless_reader, schemaless_writer

from sagesf.schemas import load_schema, schema_json
from sagesf.serde import AvroSerde
from sandbox.samples import sales_order

TOPIC = "salesorder.v1"


def rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of `work` over about `seconds`."""
    batch, calls, started = 200, 0, time.perf_counter()
    while True:
        for _ in range(batch):
            work()
        calls += batch
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per codec; the best counts")
    args = parser.parse_args()

    registry = SchemaRegistryClient.new_client({"url": "mock://bench"})
    parsed = load_schema("SalesOrder")
    ours = AvroSerde(registry, schema_json("SalesOrder"), f"{TOPIC}-value", auto_register=True, parsed=parsed)
    record = sales_order()
    framed = ours.encode(record)

    raw_out = BytesIO()
    schemaless_writer(raw_out, parsed, record)
    raw = raw_out.getvalue()
    assert framed[5:] == raw, "our body must be exactly fastavro's bytes"
    assert ours.decode(framed) == schemaless_reader(BytesIO(raw), parsed)

    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    confluent_ser = AvroSerializer(registry, schema_json("SalesOrder"))
    confluent_de = AvroDeserializer(registry)
    confluent_bytes = confluent_ser(record, ctx)
    assert confluent_bytes == framed, "same registry, same schema: Confluent's bytes are ours"

    def raw_encode() -> bytes:
        out = BytesIO()
        schemaless_writer(out, parsed, record)
        return out.getvalue()

    codecs: dict[str, Callable[[], object]] = {
        "raw fastavro encode": raw_encode,
        "sagesf AvroSerde encode": lambda: ours.encode(record),
        "confluent AvroSerializer": lambda: confluent_ser(record, ctx),
        "raw fastavro decode": lambda: schemaless_reader(BytesIO(raw), parsed),
        "sagesf AvroSerde decode": lambda: ours.decode(framed),
        "confluent AvroDeserializer": lambda: confluent_de(confluent_bytes, ctx),
    }
    best = dict.fromkeys(codecs, 0.0)
    for _ in range(args.repeats):
        for name, work in codecs.items():
            best[name] = max(best[name], rate(work, args.seconds))

    print(f"canonical SalesOrder, 3 lines: {len(framed)} bytes framed ({len(raw)} Avro body)")
    print(f"machine: {os.cpu_count()} cores; one thread; best of {args.repeats} x {args.seconds:.2f} s runs")
    for name, per_second in best.items():
        print(f"  {name:<28} {per_second:>10,.0f} records/s")
    encode_ratio = best["sagesf AvroSerde encode"] / best["raw fastavro encode"]
    decode_ratio = best["sagesf AvroSerde decode"] / best["raw fastavro decode"]
    print(f"ratio ours/raw: encode {encode_ratio:.2f}, decode {decode_ratio:.2f} (target >= 0.80)")
    confluent_decode = best["confluent AvroDeserializer"] / best["raw fastavro decode"]
    print(
        f"ratio confluent/raw: encode {best['confluent AvroSerializer'] / best['raw fastavro encode']:.2f}, "
        f"decode {confluent_decode:.2f}"
    )


if __name__ == "__main__":
    main()
