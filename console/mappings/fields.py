"""The fields each system offers, for the editor's two columns: a Salesforce object's fields
(type, length, required, picklist values, label) and a Sage table's columns (S30, N13.2, date),
read from the metadata files (`sagesf mappings pull` writes them; the sandbox ships its own).

Why read the YAML here rather than processors.metadata: the checks' model keeps what the checks
need and drops labels and `required`, which a person choosing a field wants to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SageColumnInfo", "SalesforceFieldInfo", "sage_columns", "salesforce_fields"]


@dataclass(frozen=True)
class SalesforceFieldInfo:
    name: str
    type: str
    label: str
    length: int | None = None
    required: bool = False
    values: tuple[str, ...] = ()

    @property
    def describe(self) -> str:
        size = f"({self.length})" if self.length else ""
        return f"{self.type}{size}"


@dataclass(frozen=True)
class SageColumnInfo:
    name: str
    type: str  # S30, N13.2, date, time
    key: bool = False

    @property
    def is_udf(self) -> bool:
        return self.name.startswith("UDF_")


def _load(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def salesforce_fields(path: Path | None, obj: str) -> list[SalesforceFieldInfo]:
    """The fields of `obj` in the Salesforce metadata file, by name; none without the file."""
    spec = (_load(path).get("objects") or {}).get(obj) or {}
    out = []
    for name, field in (spec.get("fields") or {}).items():
        if not isinstance(field, dict):
            continue
        length = field.get("length")
        out.append(
            SalesforceFieldInfo(
                name=str(name),
                type=str(field.get("type", "")),
                label=str(field.get("label") or name),
                length=length if isinstance(length, int) else None,
                required=bool(field.get("required")),
                values=tuple(str(v) for v in field.get("values") or ()),
            )
        )
    return sorted(out, key=lambda f: f.name.lower())


def sage_columns(path: Path | None, table: str) -> list[SageColumnInfo]:
    """The columns of `table` in the Sage metadata file, key columns first, then by name."""
    spec = (_load(path).get("tables") or {}).get(table) or {}
    key = [str(k) for k in spec.get("key") or ()]
    columns = [SageColumnInfo(str(n), str(t), str(n) in key) for n, t in (spec.get("columns") or {}).items()]
    return sorted(columns, key=lambda c: (not c.key, c.name.lower()))
