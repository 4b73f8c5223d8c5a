"""A TCP proxy on 127.0.0.1 that counts request/response round trips.

A round trip is one client "burst" (one or more packets from the client) that is followed by data
from the server: the proxy counts it when the first byte of the reply arrives, *before* passing
the reply on, so the count is complete by the time the client sees its answer. Server data that
no client data preceded (the MySQL greeting, asynchronous notices) is not counted, and neither
is client data that gets no reply (a pipelined message, a terminate).

Used only in the separate counting pass: forwarding through Python adds latency.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import socket
import sys
import threading
import time


class CountingProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` and count round trips over all connections."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self.round_trips = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="count-proxy", daemon=True)
        self._thread.start()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
            threading.Thread(
                target=self._pump, args=(client, server), name="count-proxy-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ)
        selector.register(server, selectors.EVENT_READ)
        awaiting_reply = False
        try:
            while True:
                for key, _ in selector.select():
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(1 << 16)
                    if not data:
                        return
                    if source is client:
                        awaiting_reply = True
                        server.sendall(data)
                    else:
                        if awaiting_reply:
                            awaiting_reply = False
                            with self._lock:
                                self.round_trips += 1
                        client.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()

    def count(self) -> int:
        """Round trips so far (read between two operations)."""
        return self.round_trips

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


# -- a network round trip on loopback ------------------------------------------------------------


def serve_delayed(host: str, port: int, delay: float) -> None:
    """Forward connections on a new port of 127.0.0.1 (printed first) to ``host:port``, each
    direction's bytes sent ``delay`` seconds after they arrived, in order (one reading and one
    writing thread per direction; ``time.sleep`` is ~0.1 ms late at most). Runs until killed."""

    def read(source: socket.socket, pending: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                pending.put((time.monotonic() + delay, data))
        pending.put((0.0, b""))

    def write(pending: queue.SimpleQueue[tuple[float, bytes]], target: socket.socket) -> None:
        while True:
            due, data = pending.get()
            if not data:
                break
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            try:
                target.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        server = socket.create_connection((host, port))
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, target in ((client, server), (server, client)):
            pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
            threading.Thread(target=read, args=(source, pending), daemon=True).start()
            threading.Thread(target=write, args=(pending, target), daemon=True).start()


class DelayProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``, each way ``rtt / 2`` seconds late: a
    network's round trip on loopback. It runs in a child process, so its CPU time never
    competes with the measured process for the GIL."""

    def __init__(self, target_host: str, target_port: int, rtt: float) -> None:
        import subprocess

        self._child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.proxy", target_host, str(target_port), str(rtt / 2)],
            stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
        )  # fmt: skip
        assert self._child.stdout is not None
        line = self._child.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the delay proxy did not start")
        self.host = "127.0.0.1"
        self.port = int(line)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._child.kill()
        self._child.wait()
        if self._child.stdout is not None:
            self._child.stdout.close()


if __name__ == "__main__":  # DelayProxy's child process
    serve_delayed(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
