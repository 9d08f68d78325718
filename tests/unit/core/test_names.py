"""Naming rules: pipeline names, the file names of an entry, and what counts as debris."""

import pytest

from hayhooks.pipelines.names import (
    FILE_STORE_DIR,
    LOCK_FILE,
    PRIVATE_PREFIXES,
    InvalidName,
    check_file_names,
    check_name,
    is_ignored,
    is_valid_name,
)


@pytest.mark.parametrize("name", ["a", "greet", "A-b_9", "x" * 64, "0"])
def test_valid_pipeline_names_pass(name):
    assert check_name(name) == name
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a/b", "..", ".hidden", "x" * 65, "café", "a.yml", "a\0", "-\n", None, 7],
)
def test_invalid_pipeline_names_raise_with_the_rule(name):
    assert not is_valid_name(name)
    with pytest.raises(InvalidName, match="Invalid pipeline name"):
        check_name(name)


def test_invalid_name_is_a_value_error():
    assert issubclass(InvalidName, ValueError)


@pytest.mark.parametrize(
    "files",
    [
        {"pipeline_wrapper.py": ""},
        {"pipeline_wrapper.py": "", "helpers.py": "", "data/prompt.txt": "", "a/b/c.json": ""},
        {"ü.txt": "", "with space.txt": "", "x" * 255: ""},
    ],
)
def test_relative_file_names_inside_the_folder_pass(files):
    check_file_names(files)


@pytest.mark.parametrize(
    ("file_name", "why"),
    [
        ("", "relative path"),
        ("../x", "relative path"),
        ("a/../../x", "relative path"),
        ("./x", "relative path"),
        ("a//b", "relative path"),
        ("a/", "relative path"),
        ("/etc/passwd", "relative path"),
        ("a\\..\\b", "relative path"),
        ("a\0b", "relative path"),
        (".env", "hidden files"),
        ("sub/.git/config", "hidden files"),
        ("__pycache__/x.py", "hidden files"),
        ("helpers.pyc", "hidden files"),
        ("notes.txt~", "hidden files"),
        ("x" * 256, "1 to 255 bytes"),
        ("sub/" + "é" * 128, "1 to 255 bytes"),
        ("bell\x07.txt", "printable"),
    ],
)
def test_file_names_that_escape_or_cannot_be_stored_are_refused(file_name, why):
    with pytest.raises(InvalidName, match=why):
        check_file_names({"pipeline_wrapper.py": "", file_name: ""})


@pytest.mark.parametrize("files", [{"a": "", "a/b": ""}, {"x/y/z": "", "x/y": ""}])
def test_a_file_used_as_a_folder_is_refused(files):
    with pytest.raises(InvalidName, match="in its way"):
        check_file_names(files)


@pytest.mark.parametrize(
    "name", ["__pycache__", "x.pyc", "x.pyo", "x~", ".x.swp", "x.swx", "x.tmp", ".hidden", ".staging-a-1", LOCK_FILE]
)
def test_debris_and_hidden_names_are_ignored(name):
    assert is_ignored(name)


@pytest.mark.parametrize("name", ["greet", "prompt.yml", "pipeline_wrapper.py", "data.json"])
def test_ordinary_names_are_not_ignored(name):
    assert not is_ignored(name)


def test_every_private_name_of_hayhooks_is_ignored_by_scans():
    """Staging, trash, lock and file store names must never be mistaken for an entry, nor watched."""
    assert all(is_ignored(f"{prefix}greet-0123") for prefix in PRIVATE_PREFIXES)
    assert LOCK_FILE.startswith(PRIVATE_PREFIXES)
    assert FILE_STORE_DIR.startswith(PRIVATE_PREFIXES)
