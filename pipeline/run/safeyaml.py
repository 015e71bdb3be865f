"""YAML as rnngrad reads it (sweep specs, `train --config`, params.yaml): PyYAML's safe loader, bounded and strict.

Bounded: a file of at most MAX_YAML_BYTES, nested at most MAX_YAML_DEPTH deep (PyYAML's composer recurses, so a
deeper file would exhaust Python's stack), whose aliases expand to at most MAX_YAML_NODES values. An alias costs
nothing to parse but stands for its anchor's whole subtree: a "billion laughs" file under 1 KB nests aliases into
billions of values, which whatever walks them next (validation, an error message) would spend minutes and
gigabytes on. Strict: a mapping that gives a key twice is refused (PyYAML silently keeps the last), since one of
the two values is a mistake the user would not see. Keys a merge (`<<: *base`) brings in may be overridden, as
YAML intends.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from ..errors import shown

MAX_YAML_BYTES = 256 * 1024  # a spec is about a kilobyte; PyYAML reads this much in a second or two, not more
MAX_YAML_NODES = 100_000  # values after alias expansion; a grid of 10 000 cells needs far fewer
MAX_YAML_DEPTH = 64  # nested collections; a spec nests about 6 deep, and Python's stack holds about 300
_MERGE = "tag:yaml.org,2002:merge"


class TooManyValues(yaml.MarkedYAMLError):
    """The document's aliases expand to more than MAX_YAML_NODES values."""


class TooDeep(yaml.MarkedYAMLError):
    """The document nests collections more than MAX_YAML_DEPTH deep."""


class _StrictLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  # collections open around the node being composed
        self._values = 0  # values composed so far, each alias counted as its anchor's whole subtree
        self._sizes: dict[int, int] = {}  # id(node) -> subtree size, each anchor measured once

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.anchors:
            self._count(_subtree_size(self.anchors[event.anchor], self._sizes), event.start_mark)
        else:
            self._count(1, event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise TooDeep(problem=f"it nests more than {MAX_YAML_DEPTH} levels deep", problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _count(self, n: int, mark) -> None:  # noqa: ANN001
        self._values += n
        if self._values > MAX_YAML_NODES:
            raise TooManyValues(problem=f"its aliases expand to more than {MAX_YAML_NODES} values; write the values "
                                "out, or use fewer aliases", problem_mark=mark)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        if isinstance(node, MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: PyYAML's own check refuses it next
                    continue
                if duplicate:
                    raise ConstructorError("while reading a mapping", node.start_mark,
                                           f"the key {shown(key)} appears twice; give each key once",
                                           key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _subtree_size(node: Node, sizes: dict[int, int]) -> int:
    """How many values `node` stands for once every alias in it is expanded (a self-referencing node counts once
    for each way back to itself)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a node that contains itself: its inner reference counts 1
    if isinstance(node, SequenceNode):
        total = 1 + sum(_subtree_size(child, sizes) for child in node.value)
    elif isinstance(node, MappingNode):
        total = 1 + sum(_subtree_size(k, sizes) + _subtree_size(v, sizes) for k, v in node.value)
    else:
        total = 1
    sizes[id(node)] = total
    return total


def load(text: str) -> Any:
    """Parse one YAML document like yaml.safe_load, bounded and strict (the module docstring); yaml.YAMLError,
    with the line and column of the problem, for anything refused."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
