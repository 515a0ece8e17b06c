"""gunicorn settings for running the crawl service in production.

Start it with ``gunicorn web.serve:app_factory -c gunicorn.conf.py`` from the
repository root (or the image's working folder). Every crawl setting still
comes from CRAWLER_* variables, and these GUNICORN_* variables size the server:

* GUNICORN_BIND (default ``127.0.0.1:8080``): where to listen;
* GUNICORN_WORKERS (default 2): worker processes; each serves the API and,
  unless CRAWLER_RUN_WORKER=false, crawls jobs too;
* GUNICORN_GRACEFUL_TIMEOUT (default 30): seconds a worker gets after SIGTERM,
  which must exceed CRAWLER_SHUTDOWN_GRACE_S so in-flight fetches can finish.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "aiohttp.GunicornWebWorker"
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
timeout = 60
# Longer than nginx's 60 s upstream idle timeout, so the app never closes a
# kept-alive connection just as nginx sends a request on it.
keepalive = 75
# gunicorn 27 opens a control socket under ~/.gunicorn by default, where two
# servers on one host would clash; GUNICORN_CONTROL_SOCKET moves it.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "/tmp/crawler-gunicorn.ctl")
accesslog = "-"
errorlog = "-"
# aiohttp's access log format: peer, request line, status, bytes, seconds, id.
access_log_format = '%a "%r" %s %b %Tf "%{X-Request-Id}o"'
