"""A CreateSalesOrder's body as the orders processor makes it: the order with the Sage columns
the shipped mappings/orders.yaml maps it to (processors/order_mapping.py), for tests that drive
the Sage sink directly."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
