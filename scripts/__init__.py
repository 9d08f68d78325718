"""Programs run from the repository root with ``python -m scripts.NAME`` (``make smoke``, ``make cluster-demo``)."""
