"""A module-level app, for servers that import an app instead of calling ``create_app()``.

``fastapi run -e hayhooks.asgi:app`` and ``uvicorn hayhooks.asgi:app`` use it; importing this
module builds the app, so import it only in the process that serves.
"""

from hayhooks.server.app import create_app

app = create_app()
