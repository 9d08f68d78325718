"""The README stays true: its settings table lists every setting."""

import re

from hayhooks.settings import Settings
from tests.helpers.support import REPO


def test_settings_table_lists_every_setting_and_nothing_else():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(HAYHOOKS_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == {f"HAYHOOKS_{name.upper()}" for name in Settings.model_fields}
