"""An L4 load balancer like a Kubernetes Service (kube-proxy): each new TCP connection goes to
the next backend, round robin, and stays there; it never looks inside HTTP/2."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.integration.servers import free_port


class RoundRobinTcpProxy:
    """127.0.0.1:<port> forwarding whole connections to `backends` in turn; counts them."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.connections: list[int] = []  # the backend port of each accepted connection
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port)
        )
        self._ready.set()
        with contextlib.suppress(RuntimeError):  # stopped by stop()
            self._loop.run_forever()
        server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self.backends[len(self.connections) % len(self.backends)]
        self.connections.append(backend)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def __enter__(self) -> RoundRobinTcpProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
