"""Serving the app with uvicorn on a socket bound here first, so a port in use is one clear
error (uvicorn itself would log it and exit 1)."""

from __future__ import annotations

import errno
import ipaddress
import socket

from fastapi import FastAPI

from rollout.errors import BadInput, InfrastructureError

GRACE = 2  # seconds open event streams get to end when the server stops


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it could resolve anywhere
        return False


def bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise InfrastructureError(f"cannot open a socket for {host}: {exc.strerror}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InfrastructureError(
                f"port {port} on {host} is already in use: choose another with --port"
            ) from exc
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise BadInput(f"--host {host}: not an address of this machine") from exc
        raise InfrastructureError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve on ``sock`` (from ``bind``) until interrupted (Ctrl-C or SIGTERM); closes it."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=GRACE
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
