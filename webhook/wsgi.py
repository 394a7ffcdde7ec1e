"""WSGI entry for servers that want a module-level app: `gunicorn webhook.wsgi:app`."""

from webhook import create_app

app = create_app()
