"""Run the service with uvicorn (one process, one event loop: the micro-batcher needs them shared)."""
from __future__ import annotations

import ipaddress

from fastapi import FastAPI


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' — addresses other machines cannot reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve ``app`` until interrupted. One worker process only: a second process would load a second
    copy of the model and batch separately."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)
