"""Editing a mapping file's YAML in place, keeping its comments, quotes and layout (ruamel.yaml's
round trip), so a saved edit shows as a small readable diff.

How it works: ruamel.yaml keeps a comment that follows an entry on that entry (the blank lines
and the next section's heading comment hang on the last key of the section before). Appending a
key after it, or removing it, would carry those lines along to the wrong place, so `put` and
`remove` move such trailing lines onto the entry that is now last.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.tokens import CommentToken

__all__ = ["dump", "flow", "load", "put", "remove", "replace_entries", "section"]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load(text: str) -> CommentedMap:
    doc = _yaml().load(text)
    return doc if isinstance(doc, CommentedMap) else CommentedMap()


def dump(doc: CommentedMap) -> str:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def flow(values: Mapping[str, Any]) -> CommentedMap:
    """A mapping written on one line, `{a: 1, b: 2}`, as the mapping files write entries."""
    node = CommentedMap(values)
    node.fa.set_flow_style()
    return node


def section(doc: CommentedMap, path: Iterable[str]) -> CommentedMap:
    """The mapping at `path`, made (block style) where missing or empty."""
    node = doc
    for key in path:
        child = node.get(key)
        if not isinstance(child, CommentedMap):
            child = CommentedMap()
            put(node, key, child)
        if not child:
            child.fa.set_block_style()  # `custom_fields: {}` gains entries as lines
        node = child
    return node


def put(node: CommentedMap, key: str, value: Any) -> None:
    """Set `key` (in its place when it exists; else last, taking over the trailing lines)."""
    if key in node:
        node[key] = value
        return
    last = next(reversed(node), None) if node else None
    node[key] = value
    if last is not None:
        _move_trailing(node, last, key)


def remove(node: CommentedMap, key: str) -> None:
    """Delete `key`; the lines that followed it stay, on the entry before it."""
    if key not in node:
        return
    keys = list(node)
    before = keys[keys.index(key) - 1] if keys.index(key) > 0 else None
    owner, owner_key = _trailing_owner(node, key)
    token = owner.ca.items.get(owner_key)
    rest = _split(token[2])[1] if token and token[2] is not None else ""
    del node[key]
    node.ca.items.pop(key, None)
    if before is not None and rest:
        _append_trailing(node, before, rest)


def replace_entries(node: CommentedMap, values: Mapping[str, Any]) -> None:
    """Make `node` hold exactly `values`: kept keys stay in place, new ones go last."""
    for key in [k for k in node if k not in values]:
        remove(node, key)
    for key, value in values.items():
        if node.get(key) != value:
            put(node, key, value)


def _trailing_owner(node: CommentedMap, key: Any) -> tuple[CommentedMap, Any]:
    """Where the lines after entry `key` hang: on it, or on the last key of its block mapping."""
    value = node[key]
    if isinstance(value, CommentedMap) and value and not value.fa.flow_style():
        return _trailing_owner(value, next(reversed(value)))
    return node, key


def _split(token: CommentToken) -> tuple[str, str]:
    """A trailing comment's own line (an end-of-line comment or just the line end) and the rest."""
    text = token.value
    end = text.find("\n")
    return (text, "") if end < 0 else (text[: end + 1], text[end + 1 :])


def _move_trailing(node: CommentedMap, old: Any, new: Any) -> None:
    owner, owner_key = _trailing_owner(node, old)
    token = owner.ca.items.get(owner_key)
    if not token or token[2] is None:
        return
    own, rest = _split(token[2])
    if not rest:
        return
    token[2].value = own
    _append_trailing(node, new, rest)


def _append_trailing(node: CommentedMap, key: Any, text: str) -> None:
    owner, owner_key = _trailing_owner(node, key)
    slot = owner.ca.items.setdefault(owner_key, [None, None, None, None])
    if slot[2] is None:
        slot[2] = CommentToken("\n" + text, _Mark(), None)
    else:
        slot[2].value = slot[2].value + text


class _Mark:
    """The position ruamel expects on a comment token it did not read (column 0)."""

    line = 0
    column = 0
