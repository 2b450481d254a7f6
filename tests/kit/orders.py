"""For tests that drive the Sage sink directly on the sandbox database: a CreateSalesOrder's body
as the orders processor makes it (the order with the Sage columns the shipped mappings/orders.yaml
maps it to, processors/order_mapping.py), the sink itself, and a customer and item to order."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.reads import SqlSageReads
from connectors.sage100.sink import SageCommandSink
from connectors.sage100.sql_writer import SqlSageWriter
from connectors.sage100.validation import CommandValidator
from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.order_mapping import order_to_sage

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def shipped_mappings() -> Mappings:
    return load_mappings(REPO / "mappings", sage_metadata=REPO / "mappings/metadata/sage100.yaml")


def order_body(
    order: Mapping[str, Any], customer: Mapping[str, Any] | None = None, mappings: Mappings | None = None
) -> dict[str, Any]:
    """{order, customer, header_columns, line_columns} for `order` under `mappings` (default: shipped)."""
    header, lines, _ = order_to_sage(mappings or shipped_mappings(), order)
    return {"order": order, "customer": customer, "header_columns": header, "line_columns": lines}


def sage_sink(sage_db: Any, odbc: Any, numbering: CustomerNumbering | None = None) -> SageCommandSink:
    """The Sage sink (ODBC writer) on the sandbox database `sage_db` over `odbc`."""
    tables = sage_db.tables
    reads = SqlSageReads(odbc, tables)
    return SageCommandSink(
        reads=reads,
        writer=SqlSageWriter(odbc, tables, user_key="SGSF", zone=sage_db.settings().zone),
        validator=CommandValidator(reads, tables=tables),
        numbering=numbering or CustomerNumbering(),
        results_topic="sage.results.v1",
        breaker=CircuitBreaker("sage-sink"),
    )


def customer_and_item(odbc: Any) -> tuple[str, str, str]:
    """(ARDivisionNo, CustomerNo, ItemCode) of an active customer and an active regular item."""
    [(division, number)] = odbc.fetchall(
        "SELECT ARDivisionNo, CustomerNo FROM AR_Customer WHERE CustomerStatus = ? "
        "ORDER BY CustomerNo LIMIT 1",
        ["A"],
    )
    [(item,)] = odbc.fetchall(
        "SELECT ItemCode FROM CI_Item WHERE InactiveItem = ? AND ItemType = ? ORDER BY ItemCode LIMIT 1",
        ["N", "1"],
    )
    return str(division), str(number), str(item)
