"""What orders.yaml makes of an order for Sage: the SO_SalesOrderHeader and SO_SalesOrderDetail
columns, as text, exactly as the mapping says.

What it owns: `order_to_sage(mappings, order)`, a pure function (no tables, no state: the console's
preview and the shadow mode call it too) from a canonical SalesOrder to
`(header_columns, line_columns, changes)`, the Sage column -> text maps a CreateSalesOrder carries
(schemas/SageCommand.avsc). What is structural (keys, items, quantities, prices, amounts, the
identity UDF) is not mapped here: the orders processor and the Sage sink build it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.addresses import standardise
from processors.code_page import for_sage
from processors.field_mapping import put_column
from processors.field_types import to_sage
from processors.mapping_model import CustomField, Mappings, SageField
from processors.sync_message import Changes

__all__ = ["order_to_sage"]

HEADER = "SO_SalesOrderHeader"
DETAIL = "SO_SalesOrderDetail"


def order_to_sage(
    mappings: Mappings, order: Mapping[str, Any], changes: Changes | None = None
) -> tuple[dict[str, str], list[dict[str, str]], Changes]:
    """The header columns and, per line in order, the detail columns orders.yaml maps `order` to,
    with what the rules changed on the way (folded, cut; added to `changes` when given).

    - `header`: each canonical SalesOrder field to its `sage:` column, through its picklist map,
      default, code page and length rule (`Mappings.sage_value`);
    - `addresses`: bill_to / ship_to, standardised by addresses.yaml, each part to its column;
    - `custom_fields`: each Salesforce -> Sage custom field to its SO_SalesOrderHeader UDF;
    - `lines` and `line_custom_fields`: the same for every line, to SO_SalesOrderDetail.
    An empty value writes nothing (Sage keeps its default). A value that cannot be mapped
    (unknown picklist value, too long with `overflow: error`) raises `Permanent` naming it."""
    changes = changes if changes is not None else Changes()
    spec = mappings.orders
    header = _fields(mappings, order, spec.header, HEADER, "", changes)
    for key, parts in spec.addresses.items():
        address = standardise(order.get(key), mappings.addresses, key, changes) or {}
        for part, column in parts.items():
            value = address.get(part)
            if isinstance(value, str):
                value = for_sage(value, mappings.code_page, f"{key}.{part}", changes=changes)
            put_column(header, column, value)
    header.update(_custom(mappings, order, spec.custom_fields, HEADER, "custom_fields", changes))
    lines = []
    for position, line in enumerate(order.get("lines") or [], start=1):
        where = f"lines[{int(line.get('line_no') or position)}]."
        columns = _fields(mappings, line, spec.lines, DETAIL, where, changes)
        columns.update(
            _custom(mappings, line, spec.line_custom_fields, DETAIL, where + "custom_fields", changes)
        )
        lines.append(columns)
    return header, lines, changes


def _fields(
    mappings: Mappings,
    record: Mapping[str, Any],
    specs: Mapping[str, SageField],
    table: str,
    where: str,
    changes: Changes,
) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, field_spec in specs.items():
        maps = mappings.orders.picklists
        put_column(
            out,
            field_spec.sage,
            mappings.sage_value(record.get(name), field_spec, maps, table, where + name, changes),
        )
    return out


def _custom(
    mappings: Mappings,
    record: Mapping[str, Any],
    specs: Mapping[str, CustomField],
    table: str,
    where: str,
    changes: Changes,
) -> dict[str, str]:
    """The UDF columns of the record's custom fields mapped toward Sage (direction both or
    salesforce_to_sage), converted by type (processors/field_types.py); a custom field the
    mapping does not name travels nowhere. A text longer than its UDF is cut and said in the sync
    message, like a field with `overflow: truncate`; other types must fit."""
    out: dict[str, str] = {}
    values = record.get("custom_fields") or {}
    orders = mappings.orders
    for name, spec in specs.items():
        if spec.sage is None or not spec.to_sage:
            continue
        at = f"{where}.{name}"
        value = values.get(name)
        if spec.type == "text":
            as_column = SageField(sage=spec.sage, overflow="truncate")
            value = mappings.sage_value(value, as_column, {}, table, at, changes)
        column = mappings.sage.column(table, spec.sage) if mappings.sage else None
        maps = spec.value_map(orders.picklists, orders.lookups)
        put_column(out, spec.sage, to_sage(spec, value, column, values=maps, where=at))
    return out
