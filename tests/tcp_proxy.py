"""A TCP proxy between the service and PostgreSQL, for tests that break the network on purpose.

- `blackhole()`: every open connection stops forwarding in both directions, its sockets kept open
  and unread (a stalled network or server: no FIN, no RST, no answer);
- `half_open()`: the server's side of every open connection is closed (its session ends), the
  service's side kept open and silent (a peer that vanished, or a NAT that forgot the flow);
- `restore()`: forward again (new connections always forward, except during a blackhole);
- `stop()` / `start()`: refuse connections and close all open ones (a server restart).
"""

from __future__ import annotations

import select
import socket
import threading
from contextlib import suppress

from conftest import free_port


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._silent: list[socket.socket] = []  # client sides left open by half_open
        self._flowing = threading.Event()
        self._flowing.set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
            silent, self._silent = self._silent, []
        for sock in [s for pair in pairs for s in pair] + silent:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._flowing.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def blackhole(self) -> None:
        self._flowing.clear()

    def half_open(self) -> None:
        """Close the server side of every open connection; leave the client side silent."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._silent += [client for client, _ in pairs]
        for _, upstream in pairs:
            with suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)
            upstream.close()

    def restore(self) -> None:
        self._flowing.set()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            self._spawn(self._pump, client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                with self._lock:
                    if (client, upstream) not in self._pairs:
                        return  # half-opened or stopped: the client side stays as it is
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                if not self._flowing.is_set():
                    continue  # blackholed: read nothing, forward nothing
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            with self._lock:
                mine = (client, upstream) in self._pairs
                if mine:
                    self._pairs.remove((client, upstream))
            if mine:  # else half_open or stop took the pair over
                for sock in (client, upstream):
                    with suppress(OSError):
                        sock.close()
