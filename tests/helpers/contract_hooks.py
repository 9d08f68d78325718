"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``) giving generated requests names the server serves.

Random ``model`` or ``pipeline`` names only ever reach the 404 of an unknown pipeline; a name from
``HAYHOOKS_CONTRACT_PIPELINES`` (comma-separated) reaches the pipeline's code, or its 501. Only text
is replaced, so a case whose name is deliberately of the wrong type stays invalid.
"""

import os
import random

import schemathesis

NAMES = [name for name in os.environ.get("HAYHOOKS_CONTRACT_PIPELINES", "").split(",") if name]
_CHOOSE = random.Random(0)


def _served(value: object) -> object:
    return _CHOOSE.choice(NAMES) if isinstance(value, str) and NAMES else value


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict) and "model" in body:
        body["model"] = _served(body["model"])
    return body


@schemathesis.hook
def map_query(context, query):
    if isinstance(query, dict) and "pipeline" in query:
        query["pipeline"] = _served(query["pipeline"])
    return query
