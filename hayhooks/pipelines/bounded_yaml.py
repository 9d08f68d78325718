"""YAML parsed with bounds, so a hostile document is refused at once instead of holding a core.

An alias bomb is small text whose aliases, expanded, make billions of nodes: parsing it is cheap
(aliases are shared references), but everything that walks the result (Haystack's deserializer,
hashing, JSON) expands it. The document is composed first, its size with every alias expanded is
counted once per node (a shared node is counted as often as it is referenced, without walking it
again), and only a document within the bounds is built into Python objects. Nesting is bounded
too, and recursive aliases are refused. Only safe tags are known: ``!!python/...`` fails as before.
"""

from typing import Any

import yaml

MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_NODES = 100_000  # scalars, sequences and mappings, with aliases expanded
MAX_YAML_DEPTH = 64


class YamlRefused(ValueError):
    """A YAML document over a bound; the message says which."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts nesting while it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise YamlRefused(f"YAML nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_bounded(text: str) -> Any:
    """The document of ``text``, like ``yaml.safe_load``; :class:`YamlRefused` past a bound."""
    if len(text.encode("utf-8", "replace")) > MAX_YAML_BYTES:
        raise YamlRefused(f"YAML larger than {MAX_YAML_BYTES} bytes")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node, {}, set())
        if expanded > MAX_YAML_NODES:
            raise YamlRefused(f"YAML expands to more than {MAX_YAML_NODES} nodes (aliases expanded)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes under ``node`` with aliases expanded; each distinct node is visited once (``sizes``)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise YamlRefused("YAML with a recursive alias")
    open_nodes.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, sizes, open_nodes)
            if total > MAX_YAML_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            total += _expanded_size(key_node, sizes, open_nodes) + _expanded_size(value_node, sizes, open_nodes)
            if total > MAX_YAML_NODES:
                break
    open_nodes.discard(key)
    sizes[key] = total
    return total
