"""The canonical Avro schemas: finding, expanding, parsing and release-checking schemas/*.avsc.

Owns the rules for the schema directory. Each `<Name>.avsc` defines one named type (record or
enum) in the namespace `io.sagesf.canonical`; a schema refers to types defined in other files by
name (`"type": "Envelope"`), including types nested in another file (`SourceSystem`, defined
inside Envelope.avsc). `schema_json(name)` expands those references into one self-contained
schema, each named type defined once at its first use and referred to by full name after that,
with docs, defaults and aliases kept: the text to register in a schema registry.
`load_schema(name)` is that schema parsed by fastavro for `schemaless_writer`/`schemaless_reader`
and the serde. Topic key schemas may also be Avro primitive names (`string`), which
`schema_json` accepts too.

Why expand here rather than with fastavro's `load_schema` and its repository: fastavro finds
files by full name (`io.sagesf.canonical.Envelope.avsc`), cannot find a type nested in another
file, and returns its parsed form, which is not registrable text; Parsing Canonical Form would
drop the defaults that compatibility depends on.

Released versions live under `schemas/released/v<N>/` with the same layout; the highest N is
the last release. `release_incompatibilities()` checks every current schema is BACKWARD
compatible with it (sagesf.avro_compat), and that no released schema disappeared.

Limits: parsed and expanded schemas are cached per process and directory (`clear_cache()` after
editing files in a running process); callers must not mutate what `load_schema` returns.
Default values are not checked against their field types (neither Avro library does).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
from avro.errors import AvroException
from fastavro.schema import SchemaParseException, UnknownType

from sagesf.avro_compat import backward_incompatibilities

__all__ = [
    "NAMESPACE",
    "PRIMITIVE_TYPES",
    "SCHEMAS_DIR",
    "SchemaError",
    "clear_cache",
    "latest_release_dir",
    "load_schema",
    "release_incompatibilities",
    "schema_json",
    "schema_names",
]

NAMESPACE = "io.sagesf.canonical"
# schemas/ at the repository root (the package is installed editable; see the module docstring)
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_TYPES = frozenset({"record", "error", "enum", "fixed"})
_COMPLEX_TYPES = _NAMED_TYPES | {"array", "map"}


class SchemaError(ValueError):
    """A schema file is missing, not valid JSON or not valid Avro; the message names the file."""


@dataclass
class _Definition:
    fullname: str
    node: dict[str, Any]
    file: Path


@dataclass
class _Catalog:
    """Every named type defined in one schema directory, by full name."""

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)  # schema name (file stem) -> file
    types: dict[str, _Definition] = field(default_factory=dict)


def _dir(schemas_dir: Path | None) -> Path:
    return (schemas_dir if schemas_dir is not None else SCHEMAS_DIR).resolve()


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _split(fullname: str) -> tuple[str, str]:
    namespace, _, name = fullname.rpartition(".")
    return namespace, name


def _fullname(node: dict[str, Any], enclosing_ns: str) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    namespace = node.get("namespace", enclosing_ns)
    return f"{namespace}.{name}" if namespace else name


def _resolve(ref: str, enclosing_ns: str) -> str:
    return ref if "." in ref or not enclosing_ns else f"{enclosing_ns}.{ref}"


@functools.cache
def _catalog(directory: Path) -> _Catalog:
    if not directory.is_dir():
        raise SchemaError(f"schema directory {_display(directory)} does not exist")
    catalog = _Catalog(directory)
    for path in sorted(directory.glob("*.avsc")):
        try:
            node = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SchemaError(
                f"{_display(path)}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
            ) from None
        if not (isinstance(node, dict) and node.get("type") in _NAMED_TYPES and "name" in node):
            raise SchemaError(f"{_display(path)}: must define one named type (record, enum or fixed)")
        if _split(_fullname(node, ""))[1] != path.stem:
            raise SchemaError(
                f"{_display(path)}: defines {node['name']!r}; name the file after the type it defines"
            )
        catalog.files[path.stem] = path
        _index(catalog, node, "", path)
    return catalog


def _index(catalog: _Catalog, node: Any, ns: str, path: Path) -> None:
    """Record every named type defined anywhere in `node` (nested ones too)."""
    if isinstance(node, list):
        for branch in node:
            _index(catalog, branch, ns, path)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in _NAMED_TYPES and "name" in node:
        fullname = _fullname(node, ns)
        if fullname in catalog.types:
            first = catalog.types[fullname].file
            raise SchemaError(
                f"{_display(path)}: type {fullname} is already defined in {_display(first)}; "
                "define it once and refer to it by name"
            )
        catalog.types[fullname] = _Definition(fullname, node, path)
        ns = _split(fullname)[0]
        for fld in node.get("fields", []) if isinstance(node.get("fields"), list) else []:
            if isinstance(fld, dict):
                _index(catalog, fld.get("type"), ns, path)
    elif kind == "array":
        _index(catalog, node.get("items"), ns, path)
    elif kind == "map":
        _index(catalog, node.get("values"), ns, path)
    elif isinstance(kind, dict | list):
        _index(catalog, kind, ns, path)


class _Expander:
    """Inlines named-type references at first use; later uses stay references by full name."""

    def __init__(self, catalog: _Catalog, origin: Path) -> None:
        self.catalog = catalog
        self.origin = origin
        self.defined: set[str] = set()
        self.files_used: set[Path] = set()

    def expand(self, node: Any, ns: str, path: Path) -> Any:
        self.files_used.add(path)
        if isinstance(node, str):
            if node in PRIMITIVE_TYPES:
                return node
            fullname = _resolve(node, ns)
            if fullname in self.defined:
                return fullname
            definition = self.catalog.types.get(fullname)
            if definition is None:
                raise SchemaError(
                    f"{_display(path)}: unknown type {node!r} (no file in {_display(self.catalog.directory)} "
                    f"defines {fullname})"
                )
            return self.expand(definition.node, _split(fullname)[0], definition.file)
        if isinstance(node, list):
            return [self.expand(branch, ns, path) for branch in node]
        if not isinstance(node, dict):
            raise SchemaError(f"{_display(path)}: {node!r} is not an Avro type")
        kind = node.get("type")
        if kind in _NAMED_TYPES:
            fullname = _fullname(node, ns)
            if fullname in self.defined:
                return fullname
            self.defined.add(fullname)
            namespace, name = _split(fullname)
            out = {**node, "name": name, "namespace": namespace}
            if isinstance(node.get("fields"), list):
                out["fields"] = [
                    {**fld, "type": self.expand(fld.get("type"), namespace, path)}
                    if isinstance(fld, dict)
                    else fld
                    for fld in node["fields"]
                ]
            return out
        if kind == "array":
            return {**node, "items": self.expand(node.get("items"), ns, path)}
        if kind == "map":
            return {**node, "values": self.expand(node.get("values"), ns, path)}
        if isinstance(kind, str) and kind not in PRIMITIVE_TYPES and kind not in _COMPLEX_TYPES:
            return self.expand(kind, ns, path)  # {"type": "Address"} is a reference too
        if isinstance(kind, dict | list):
            return {**node, "type": self.expand(kind, ns, path)}
        return node


def schema_names(schemas_dir: Path | None = None) -> list[str]:
    """Names of the schemas in the directory (file stems, e.g. `SalesOrder`), sorted."""
    return sorted(_catalog(_dir(schemas_dir)).files)


@functools.cache
def _expanded(name: str, directory: Path) -> tuple[str, frozenset[Path]]:
    catalog = _catalog(directory)
    path = catalog.files.get(name)
    if path is None:
        known = ", ".join(sorted(catalog.files)) or "none"
        raise SchemaError(f"no schema {name!r} in {_display(directory)} (known: {known})")
    expander = _Expander(catalog, path)
    expanded = expander.expand(json.loads(path.read_text(encoding="utf-8")), "", path)
    return json.dumps(expanded, ensure_ascii=False), frozenset(expander.files_used)


@functools.cache
def _validated(name: str, directory: Path) -> str:
    text, files_used = _expanded(name, directory)
    problem = _avro_problem(text)
    if problem is None:
        return text
    # Blame the file where the problem is: a dependency that fails on its own, else this one.
    path = _catalog(directory).files[name]
    for dep in sorted(files_used - {path}):
        try:
            _validated(dep.stem, directory)
        except SchemaError as exc:
            raise SchemaError(f"{_display(path)}: uses {dep.stem}, which is invalid: {exc}") from None
    raise SchemaError(f"{_display(path)}: not a valid Avro schema: {problem}")


def _avro_problem(text: str) -> str | None:
    """The first complaint of either Avro library about a schema text, or None."""
    try:
        fastavro.parse_schema(json.loads(text))
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        avro.schema.parse(text)
    except (AvroException, ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def schema_json(name: str, schemas_dir: Path | None = None) -> str:
    """The self-contained schema text for `name`, as registered in a registry.

    `name` is a schema file stem (`SalesOrder`) or an Avro primitive type name (`string`, used
    for topic keys), which gives `"string"`. Raises SchemaError naming the file if it is invalid.
    """
    if name in PRIMITIVE_TYPES:
        return json.dumps(name)
    return _validated(name, _dir(schemas_dir))


@functools.cache
def _parsed(name: str, directory: Path) -> dict[str, Any]:
    parsed = fastavro.parse_schema(json.loads(_validated(name, directory)))
    assert isinstance(parsed, dict)  # every schema file defines a named type (checked in _catalog)
    return parsed


def load_schema(name: str, schemas_dir: Path | None = None) -> dict[str, Any]:
    """The schema `name` parsed by fastavro, named types from other files resolved (cached)."""
    return _parsed(name, _dir(schemas_dir))


def clear_cache() -> None:
    """Forget parsed schemas, e.g. after editing files in a long-running process."""
    for cached in (_catalog, _expanded, _validated, _parsed):
        cached.cache_clear()


def latest_release_dir(schemas_dir: Path | None = None) -> Path | None:
    """`<schemas>/released/v<N>` with the highest N, or None before the first release."""
    released = _dir(schemas_dir) / "released"
    versions = [p for p in released.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    return max(versions, key=lambda p: int(p.name[1:]), default=None)


def release_incompatibilities(
    schemas_dir: Path | None = None, release_dir: Path | None = None
) -> dict[str, list[str]]:
    """Schemas that break BACKWARD compatibility with the release, with the reasons.

    Compares each schema of the release (default: the latest under `<schemas>/released/`) with
    the current one of the same name. A schema removed since the release is a problem (its topics'
    consumers lose their schema); schemas added since are new and have nothing to break.
    Returns {} when everything is compatible or nothing was released yet.
    """
    current = _dir(schemas_dir)
    release = release_dir.resolve() if release_dir is not None else latest_release_dir(current)
    if release is None:
        return {}
    present = set(schema_names(current))
    problems: dict[str, list[str]] = {}
    for name in schema_names(release):
        if name not in present:
            problems[name] = [f"{name}: schema removed since release {release.name}"]
            continue
        found = backward_incompatibilities(schema_json(name, current), schema_json(name, release))
        if found:
            problems[name] = found
    return problems
