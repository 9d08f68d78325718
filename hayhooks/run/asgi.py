"""A module-level app, for servers that import an app instead of calling ``create_app()``.

``fastapi run -e hayhooks.run.asgi:app`` and ``uvicorn hayhooks.run.asgi:app`` use it; importing
this module builds the app, so import it only in the process that serves.
"""

from hayhooks.http.app import create_app

app = create_app()
