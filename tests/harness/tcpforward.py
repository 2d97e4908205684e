"""A second listener for a TCP server: ``python -m tests.harness.tcpforward LISTEN TARGET``.

The API server of the local control plane listens on 127.0.0.1 only (integration tests run
without a node, so the bridge address may not exist when it starts, and ``--bind-address``
takes one address). The test node runs this to make it reachable on the bridge address too,
where Pods reach it through the ``kubernetes`` Service. Bytes are passed through untouched
(TLS end to end: client certificates and tokens work as on loopback). Nagle's algorithm is off
on both sides: a request written in two parts would otherwise wait for a delayed ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def serve(listen: str, target: str) -> None:
    target_host, target_port = _split(target)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        _nodelay(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    host, port = _split(listen)
    server = await asyncio.start_server(handle, host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.harness.tcpforward LISTEN_HOST:PORT TARGET_HOST:PORT",
              file=sys.stderr)
        return 2
    asyncio.run(serve(argv[0], argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
