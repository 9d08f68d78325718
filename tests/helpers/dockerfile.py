"""The repository's Dockerfile, read the way the tests need it."""

import json
import re

from tests.helpers.support import REPO


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in lines
        if line and not line.startswith("#")
        for parts in [line.split(None, 1)]
    ]


def dockerfile_cmd() -> list[str]:
    (cmd,) = [args for instruction, args in dockerfile_instructions() if instruction == "CMD"]
    return json.loads(cmd)


def dockerfile_uid() -> int:
    users = [args for instruction, args in dockerfile_instructions() if instruction == "USER"]
    return int(users[-1].split(":")[0])


def healthcheck_code() -> str:
    (check,) = [args for instruction, args in dockerfile_instructions() if instruction == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    return command[2]
