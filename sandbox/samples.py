"""Sample canonical records for the demo, benchmarks and tests: realistic, every field set."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

LINE_VALUES = [
    ("3.000000", "137.166667", "411.50"),
    ("1.500000", "200.000000", "300.00"),
    ("0.125000", "2840.000000", "355.00"),
]


def line(n: int, quantity: str, price: str, amount: str) -> dict[str, Any]:
    return {
        "line_no": n,
        "line_key": None,
        "salesforce_line_id": f"00kDn00000{n:03d}AbCIAK",
        "item_code": None,
        "product_code": f"WIDGET-{n}",
        "salesforce_product_id": f"01tDn00000{n:03d}XyZIAK",
        "item_type": "REGULAR",
        "description": f"Widget size {n}",
        "warehouse_code": "000",
        "unit_of_measure": "EACH",
        "quantity_ordered": Decimal(quantity),
        "quantity_shipped": None,
        "quantity_backordered": None,
        "unit_price": Decimal(price),
        "unit_cost": Decimal("12.340000"),
        "extension_amount": Decimal(amount),
        "tax_class": "TX",
        "comment_text": None,
        "custom_fields": {},
    }


def sales_order(lines: int = 3) -> dict[str, Any]:
    """A canonical SalesOrder with every field set, so a round trip must give back exactly this."""
    return {
        "envelope": {
            "event_id": uuid.UUID("7d0e5a7c-2b4f-4c61-9b1e-4a8d2f0c9e11"),
            "event_time": datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC),
            "source_system": "SALESFORCE",
            "source_record_id": "006Dn000004WxYzIAK",
            "correlation_id": "corr-1",
        },
        "salesforce_opportunity_id": "006Dn000004WxYzIAK",
        "salesforce_order_id": None,
        "sales_order_no": None,
        "customer": {
            "salesforce_account_id": "001Dn000003AbCdIAK",
            "ar_division_no": "01",
            "customer_no": "ABF",
            "name": "American Business Futures",
        },
        "order_type": "STANDARD",
        "status": "NEW",
        "source_status": "Closed Won",
        "order_date": date(2026, 3, 14),
        "customer_po_no": "PO-7781",
        "currency_code": "USD",
        "bill_to": None,
        "ship_to": None,
        "ship_via": "UPS GROUND",
        "fob": None,
        "warehouse_code": "000",
        "terms_code": None,
        "tax_schedule": "AVATAX",
        "taxable_amount": Decimal("1066.50"),
        "non_taxable_amount": Decimal("0.00"),
        "sales_tax_amount": Decimal("87.99"),
        "discount_amount": None,
        "freight_amount": Decimal("80.01"),
        "deposit_amount": None,
        "total_amount": Decimal("1234.50"),
        "lines": [line(n, *LINE_VALUES[(n - 1) % 3]) for n in range(1, lines + 1)],
        "custom_fields": {"UDF_REGION": "WEST", "UDF_EMPTY": None},
    }
