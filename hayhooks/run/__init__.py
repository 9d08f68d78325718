"""Ways of running hayhooks, one module each: a single uvicorn (``hayhooks run``), the gunicorn
configuration, and a module-level ASGI app. Every one builds workers with ``create_app()``."""
