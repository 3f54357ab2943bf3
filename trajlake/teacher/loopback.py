"""An HTTP server on a background thread, for the local OpenAI-compatible servers: the
teacher double (trajlake/teacher/double.py) and the student (`trajlake dagger serve`).

The owner (the double, the student) keeps its own state and answers; the server binds the
port (0: any free one), serves on a daemon thread until close(), and hands the owner to the
request handlers as `self.server.owner`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ClosingServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose close also ends its open (keep-alive) connections, as a
    server process that stops does: clients see the restart instead of a server that
    stopped accepting but still answers on the connections it had."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    """`handler` serving on (host, port) for `owner`, from construction until close()."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        owner: object,
        host: str = "127.0.0.1",
        port: int = 0,
        server_class: type[ClosingServer] = ClosingServer,
    ) -> None:
        self.httpd = server_class((host, port), handler)  # OSError when the port is taken
        self.httpd.owner = owner  # set before the first request can arrive
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The OpenAI base URL, `http://host:port/v1`."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        """Stop serving, end open connections, release the port, and wait for the thread."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.drop_connections()
        self._thread.join()
