"""Free TCP ports on 127.0.0.1 (the control plane never listens anywhere else)."""

from __future__ import annotations

import contextlib
import socket
import time

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the kernel considers free right now.

    All sockets stay open until every port is chosen, so the same port is never handed
    out twice in one call. Another process could still take one before we bind it: the
    window is short, and a bind failure shows up as a clear start-up error.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (a bind would succeed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def wait_ports_free(ports: list[int], timeout: float = 10.0) -> list[int]:
    """Wait until every port is free; return those still busy after ``timeout``."""
    deadline = time.monotonic() + timeout
    busy = [p for p in ports if not port_is_free(p)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.1)
        busy = [p for p in busy if not port_is_free(p)]
    return busy
