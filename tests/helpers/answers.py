"""Canned answers of a hayhooks server, for tests of its clients (the CLI)."""

# GET /status of a two-worker server: one pipeline ready everywhere, one that failed to load.
STATUS = {
    "status": "Up!",
    "pipelines": ["a", "b"],
    "worker": {"pid": 123, "host": "myhost", "port": 1416},
    "details": [
        {"name": "a", "state": "ready", "revision": "3f2a9c01beef", "error": None, "kind": "files"},
        {"name": "b", "state": "failed", "revision": None, "error": "setup() failed: boom", "kind": "yaml"},
    ],
    "cluster": {
        "converged": True,
        "workers": [
            {
                "pid": 123,
                "pipelines": {
                    "a": {"revision": "3f2a9c01beef", "state": "ready"},
                    "b": {"revision": None, "state": "failed"},
                },
            },
            {
                "pid": 124,
                "pipelines": {
                    "a": {"revision": "3f2a9c01beef", "state": "ready"},
                    "b": {"revision": None, "state": "failed"},
                },
            },
        ],
        "lagging": [],
    },
}
