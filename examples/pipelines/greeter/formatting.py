"""Helper module for the greeter example.

It is imported from pipeline_wrapper.py with a relative import
(``from .formatting import ...``) to show that sibling modules in a pipeline
folder are importable.
"""

GREETING_TEMPLATE = "{{ greeting }}, {{ name }}!"


def clean_name(name: str) -> str:
    """Collapse whitespace in a name and capitalise each word ("  ada  lovelace " -> "Ada Lovelace")."""
    return " ".join(part[:1].upper() + part[1:] for part in name.split())
