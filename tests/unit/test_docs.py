"""The README stays true: its settings table lists every setting, and --help texts exist."""

import re
import subprocess

from hayhooks.settings import Settings
from tests.helpers.support import BIN, REPO


def test_settings_table_lists_every_setting_and_nothing_else():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(HAYHOOKS_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == {f"HAYHOOKS_{name.upper()}" for name in Settings.model_fields}


def test_every_cli_command_has_help():
    for command in (["--help"], ["run", "--help"], ["status", "--help"], ["pipeline", "run", "--help"]):
        result = subprocess.run([str(BIN / "hayhooks"), *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "Usage" in result.stdout
