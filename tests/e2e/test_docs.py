"""The CLI documents itself: the installed ``hayhooks`` answers --help for its commands."""

import subprocess

from tests.helpers.support import BIN


def test_every_cli_command_has_help():
    for command in (["--help"], ["run", "--help"], ["status", "--help"], ["pipeline", "run", "--help"]):
        result = subprocess.run([str(BIN / "hayhooks"), *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "Usage" in result.stdout
