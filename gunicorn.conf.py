"""gunicorn -c gunicorn.conf.py: hayhooks' packaged configuration, settings from HAYHOOKS_* env vars."""

from hayhooks.run.gunicorn_conf import *  # noqa: F403
