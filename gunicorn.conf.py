"""gunicorn -c gunicorn.conf.py: hayhooks' packaged configuration, settings from HAYHOOKS_* env vars."""

from hayhooks.server.gunicorn_conf import *  # noqa: F403
