"""The container's health probe: exit 0 when GET /healthz on this host returns 200.

The Dockerfile's HEALTHCHECK runs ``python /app/healthcheck.py``, because the
slim Python image has no curl or wget. The probe connects to 127.0.0.1 on the
port that GUNICORN_BIND names (the image sets ``0.0.0.0:8080``), so it follows
a changed bind. It uses http.client, which ignores HTTP_PROXY and the other
proxy variables that a deployment may set for the crawler's own requests.

Exit status 0 means healthy and 1 unhealthy, as Docker expects. Docker keeps
the last lines of output of each probe, shown by ``docker inspect``.
"""

from __future__ import annotations

import http.client
import os
import sys

DEFAULT_BIND = "127.0.0.1:8080"
"""gunicorn.conf.py's default when GUNICORN_BIND is unset."""
PROBE_HOST = "127.0.0.1"
TIMEOUT_S = 4.0
"""Below the HEALTHCHECK's 5 s timeout, so the probe reports its own error."""


class ProbeError(Exception):
    """The service did not return 200 for /healthz, or its port is unknown."""


def port_from_bind(bind: str) -> int:
    """Return the TCP port of a gunicorn bind such as ``0.0.0.0:8080`` or ``[::]:80``.

    Raises:
        ProbeError: for a Unix socket (``unix:PATH``) or an address without a port.
    """
    if bind.startswith(("unix:", "fd://")):
        raise ProbeError(
            f"GUNICORN_BIND is {bind!r}, not a TCP address; the probe needs host:port"
        )
    host, colon, port = bind.rpartition(":")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ProbeError(f"GUNICORN_BIND must look like 0.0.0.0:8080, got {bind!r}")
    return int(port)


def probe(port: int) -> None:
    """Send GET /healthz to PROBE_HOST:``port``; raise ProbeError unless it is 200."""
    connection = http.client.HTTPConnection(PROBE_HOST, port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", "/healthz", headers={"User-Agent": "healthcheck"})
        response = connection.getresponse()
        body = response.read(200)
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(
            f"GET http://{PROBE_HOST}:{port}/healthz failed: {exc!r}"
        ) from exc
    finally:
        connection.close()

    if response.status != 200:
        raise ProbeError(
            f"GET http://{PROBE_HOST}:{port}/healthz returned {response.status}: "
            f"{body.decode('utf-8', 'replace')}"
        )


def main() -> int:
    """Probe the service and return the exit status for Docker."""
    try:
        port = port_from_bind(os.environ.get("GUNICORN_BIND", DEFAULT_BIND).strip())
        probe(port)
    except ProbeError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"healthy: GET /healthz on port {port} returned 200")
    return 0


if __name__ == "__main__":
    sys.exit(main())
