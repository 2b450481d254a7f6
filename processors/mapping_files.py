"""Reading the mapping files (mappings/*.yaml) into `Mappings`, every problem placed at its line.

What it owns: `load_mappings()`, `MappingError` and `FILES` (which file is which model). The
other files in mappings/ (salesforce_source.yaml belongs to the Salesforce connector, metadata/
is data) are not read here.

Why our own YAML reading: PyYAML's loader gives no line numbers and silently merges duplicate
keys, so each file is composed node by node here, keeping the line of every key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from processors.mapping_checks import check_mappings
from processors.mapping_model import (
    AddressesMapping,
    CustomersMapping,
    Mappings,
    OrdersMapping,
    PricingMapping,
    ProductsMapping,
    ValueMap,
)
from processors.metadata import (
    MetadataError,
    SageMetadata,
    SalesforceMetadata,
    load_sage_metadata,
    load_salesforce_metadata,
)
from sagesf.errors import MappingError
from sagesf.yaml_lines import YamlDocument, YamlSyntaxError, read_yaml

__all__ = ["FILES", "MappingError", "load_mappings", "reload_changed"]

Path_ = tuple[str | int, ...]


FILES: dict[str, tuple[str, type[BaseModel]]] = {
    "customers": ("customers.yaml", CustomersMapping),
    "orders": ("orders.yaml", OrdersMapping),
    "products": ("products.yaml", ProductsMapping),
    "pricing": ("pricing.yaml", PricingMapping),
    "addresses": ("addresses.yaml", AddressesMapping),
}


@dataclass
class _Doc:
    """One mapping file: its data and the line of every key path."""

    path: Path
    yaml: YamlDocument

    @property
    def name(self) -> str:
        return _display(self.path)

    @property
    def data(self) -> Any:
        return self.yaml.data

    def line(self, path: Path_) -> int:
        return self.yaml.line(path)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _entry(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(file)"


def _read(path: Path, problems: list[str]) -> _Doc | None:
    name = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{name}:1: (file): mapping file not found")
        return None
    except OSError as exc:
        problems.append(f"{name}:1: (file): cannot read: {exc.strerror}")
        return None
    try:
        document = read_yaml(text)
    except YamlSyntaxError as exc:
        problems.append(f"{name}:{exc.line}: (file): not valid YAML: {exc.problem}")
        return None
    if document is None:
        problems.append(f"{name}:1: (file): the file is empty")
        return None
    for key in document.repeated:
        problems.append(
            f"{name}:{key.line}: {_entry(key.path)}: key repeats the one on line {key.first_line}"
        )
    return _Doc(path, document)


def _pydantic_problems(doc: _Doc, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # a tagged union (Literal["all"] | list) adds its member name to the location
        loc = tuple(p for p in loc if p not in {"literal['all']", "list[str]"})
        msg = err["msg"]
        if err["type"] == "string_type" and isinstance(err.get("input"), int | float | bool):
            msg += f" (got {err['input']!r}: quote it in YAML)"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt, or not supported here)"
        out.append(f"{doc.name}:{doc.line(loc)}: {_entry(loc)}: {msg}")
    return out


def _source_maps(directory: Path) -> dict[str, ValueMap]:
    """The Salesforce source's value map of each Account field (salesforce_source.yaml, canonical
    field -> map): the first leg of a customer field's round trip. The connector validates its own
    file; here a missing file or an entry that does not parse is left out of the round trip."""
    try:
        document = read_yaml((directory / "salesforce_source.yaml").read_text(encoding="utf-8"))
    except (OSError, YamlSyntaxError):
        return {}
    data = document.data if document is not None and isinstance(document.data, dict) else {}
    maps, account = data.get("value_maps") or {}, (data.get("objects") or {}).get("Account") or {}
    found: dict[str, ValueMap] = {}
    for name, spec in (account.get("fields") or {}).items():
        if not isinstance(spec, dict) or not isinstance(maps.get(spec.get("map")), dict):
            continue
        try:
            found[name] = ValueMap.model_validate(maps[spec["map"]])
        except ValidationError:
            continue
    return found


def load_mappings(
    directory: Path | str,
    *,
    salesforce_metadata: Path | str | None = None,
    sage_metadata: Path | str | None = None,
) -> Mappings:
    """Read and check every mapping file in `directory`; MappingError lists every problem.

    Each file is composed with PyYAML keeping the line of every key (a repeated key, which PyYAML
    would silently merge, is an error), validated by its model (processors/mapping_model.py),
    then cross-checked (processors/mapping_checks.py) against the canonical schemas and, when
    given, the Salesforce metadata (objects and fields exist and are updateable where written,
    picklist values, external IDs, number fields) and the Sage 100 column definitions (columns,
    `UDF_` columns, values and lengths that fit: S30, N15.6). Every problem is reported at once,
    each at the line of its entry as `<file>:<line>: <entry>: <reason>`, e.g.
    `mappings/products.yaml:31: lookup.WIDGET-9: ItemCode 'X...' is 31 characters;
    CI_Item.ItemCode holds 30`.

    Limits: the metadata files describe what the checks need (processors/metadata.py); without
    them only the canonical schemas are checked, and truncation to a Sage column length happens
    only for fields whose length is known. A running worker calls this again when
    `Mappings.changed()` (processors/app.py).
    """
    directory = Path(directory)
    problems: list[str] = []
    docs: dict[str, _Doc] = {}
    models: dict[str, Any] = {}
    mtimes: dict[Path, float] = {}
    for key, (filename, model) in FILES.items():
        path = directory / filename
        try:
            mtimes[path] = path.stat().st_mtime
        except OSError:
            mtimes[path] = -1.0
        doc = _read(path, problems)
        if doc is None:
            continue
        docs[key] = doc
        if not isinstance(doc.data, dict):
            problems.append(f"{doc.name}:1: (file): expected a mapping of keys (version: 1, ...)")
            continue
        try:
            models[key] = model.model_validate(doc.data)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(doc, exc))
    sf: SalesforceMetadata | None = None
    sage: SageMetadata | None = None
    try:
        sf = load_salesforce_metadata(salesforce_metadata) if salesforce_metadata else None
    except MetadataError as exc:
        problems.append(str(exc))
    try:
        sage = load_sage_metadata(sage_metadata) if sage_metadata else None
    except MetadataError as exc:
        problems.append(str(exc))
    if len(models) == len(FILES):

        def report(file: str, path: Path_, reason: str) -> None:
            doc = docs[file]
            problems.append(f"{doc.name}:{doc.line(path)}: {_entry(path)}: {reason}")

        check_mappings(models, sf, sage, report, _source_maps(directory))
    if problems:
        raise MappingError(problems)
    return Mappings(directory=directory, sage=sage, salesforce=sf, mtimes=mtimes, **models)


def reload_changed(current: Mappings, load: Callable[[], Mappings]) -> Mappings | None:
    """The mapping files loaded again (`load`) when one changed since `current` was loaded; None
    when none did. An edit that does not load raises MappingError, and its files' times are
    taken as seen, so a broken edit is reported once, not at every check."""
    if not current.changed():
        return None
    try:
        return load()
    except MappingError:
        current.mark_seen()
        raise
