"""YAML no deploy may turn into work: bombs, depth, recursion, unsafe tags, unknown components."""


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the one before: width**levels leaves."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        aliases = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\ninputs: {q: builder.query}\noutputs: {p: builder.prompt}\n"


def deep(levels: int = 300) -> str:
    return "components: " + "[" * levels + "]" * levels + "\ninputs: {q: b.q}\n"


HOSTILE_YAML = {
    "alias bomb": alias_bomb(),
    "alias bomb in components": "components:\n  builder: &b\n    type: x\n" + alias_bomb(6, 12),
    "deep nesting": deep(),
    "deep mappings": "components: " + "{a: " * 200 + "1" + "}" * 200 + "\ninputs: {q: b.q}\n",
    "recursive alias": "components: &c\n  loop: *c\ninputs: {q: b.q}\n",
    "python object tag": "components: !!python/object/apply:os.system ['true']\ninputs: {q: b.q}\n",
    "python name tag": "components:\n  x:\n    type: !!python/name:os.system\ninputs: {q: b.q}\n",
    "unknown component type": (
        "components:\n  x:\n    type: not.allowlisted.Component\n    init_parameters: {}\n"
        "connections: []\ninputs: {q: x.q}\noutputs: {r: x.r}\n"
    ),
    "os module component": (
        "components:\n  x:\n    type: os.system\n    init_parameters: {}\nconnections: []\ninputs: {q: x.q}\n"
    ),
    "huge document": "components: {}\ninputs: {q: b.q}\n# " + "x" * (2 * 1024 * 1024) + "\n",
    "not a mapping": "- just\n- a list\n",
}
