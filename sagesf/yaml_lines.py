"""YAML read with the line of every entry, so an error about a configuration file names its line.

topics.yaml (sagesf.topics_file) and the mapping files (processors.mapping_files) are read this way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["NodePath", "RepeatedKey", "YamlDocument", "YamlSyntaxError", "read_yaml"]

NodePath = tuple[str | int, ...]  # keys and list positions from the top of the document


class YamlSyntaxError(ValueError):
    """The text is not valid YAML; `line` (1-based) is where the parser gave up."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class RepeatedKey:
    """A mapping key written twice: YAML keeps the last one silently, a person meant one of them."""

    path: NodePath  # the key's path
    line: int
    first_line: int


@dataclass
class YamlDocument:
    """A YAML document's data, the line of every key and list item, and its repeated keys."""

    data: Any
    lines: dict[NodePath, int] = field(default_factory=dict)
    repeated: list[RepeatedKey] = field(default_factory=list)

    def line(self, path: NodePath) -> int:
        """The line of `path`, or of its closest ancestor that has one (1 when none)."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


def read_yaml(text: str) -> YamlDocument | None:
    """The document in `text` (None when it is empty); YamlSyntaxError when it is not YAML."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        document = YamlDocument(loader.construct_document(node))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise YamlSyntaxError(mark.line + 1 if mark is not None else 1, str(exc.problem)) from None
    finally:
        loader.dispose()
    _index(node, (), document)
    return document


def _index(node: yaml.Node, path: NodePath, document: YamlDocument) -> None:
    document.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                document.repeated.append(RepeatedKey((*path, key), line, seen[key]))
            seen[key] = line
            document.lines[(*path, key)] = line
            _index(value_node, (*path, key), document)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            document.lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), document)
