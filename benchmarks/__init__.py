"""`make bench`: our server against a plain FastAPI app and the published Hayhooks 2.1.0 (run.py)."""
