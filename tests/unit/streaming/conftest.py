"""Haystack reads its telemetry switch on import; every test here imports Haystack."""

import os

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"
