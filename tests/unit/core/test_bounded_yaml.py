"""Bounded YAML: hostile documents are refused fast, ordinary ones parse as safe_load does."""

import time

import pytest
import yaml

from hayhooks.pipelines.bounded_yaml import YamlRefused, load_bounded
from tests.helpers.hostile_yaml import alias_bomb, deep
from tests.helpers.pipelines import PROMPT_YAML


def test_an_ordinary_document_parses_like_safe_load():
    assert load_bounded(PROMPT_YAML) == yaml.safe_load(PROMPT_YAML)
    shared = "base: &b {x: 1}\nfirst: *b\nsecond: *b\n"
    assert load_bounded(shared) == yaml.safe_load(shared)
    assert load_bounded("") is None


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        (alias_bomb(), "expands to more than"),
        (deep(), "nested deeper than"),
        ("a: &a\n  b: *a\n", "recursive alias"),
        ("x: " + "y" * (2 * 1024 * 1024), "larger than"),
    ],
)
def test_a_hostile_document_is_refused_at_once(text: str, bound: str):
    started = time.perf_counter()
    with pytest.raises(YamlRefused, match=bound):
        load_bounded(text)
    assert time.perf_counter() - started < 1


def test_unsafe_tags_stay_unknown():
    with pytest.raises(yaml.constructor.ConstructorError):
        load_bounded("x: !!python/object/apply:os.system ['true']\n")
