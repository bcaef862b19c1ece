"""Serve the fake issuer over real HTTP on 127.0.0.1 (stdlib server, daemon threads)."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from ._http import HTTPReply, HTTPRequest

__all__ = ["LoopbackServer", "ServeContext"]

T = TypeVar("T")

_MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # an idle keep-alive connection is dropped after this many seconds
    server_version = "FakeIssuer"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read replies, not access logs."""

    def _refuse(self, status: int) -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def _dispatch(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._refuse(400)
            return
        body = self.rfile.read(length)
        headers = tuple((name.lower(), value) for name, value in self.headers.items())
        request = HTTPRequest(self.command, urlsplit(self.path).path, headers, body)
        self._send(self.server.respond(request))

    def _send(self, reply: HTTPReply) -> None:
        stopping = self.server.stopping
        if reply.delay and stopping.wait(reply.delay):
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status != 204 and not any(name == "content-length" for name, _ in reply.headers):
            self.send_header("Content-Length", str(len(reply.body)))  # none on 204 (RFC 9110)
        self.end_headers()
        if reply.drip is None:
            self.wfile.write(reply.body)
            return
        for index in range(len(reply.body)):
            # A pause between bytes, none after the last: a reply written whole always
            # ends here, even while the server is stopping.
            if index and stopping.wait(reply.drip):
                self.close_connection = True
                return
            self.wfile.write(reply.body[index : index + 1])


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    timeout = 1.0  # handle_request() waits at most this long for a connection to accept

    def __init__(self, respond: Callable[[HTTPRequest], HTTPReply], port: int) -> None:
        self.respond = respond
        self.stopping = threading.Event()
        self._guard = threading.Lock()
        self._request_threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="fake-issuer-request",
            daemon=True,
        )
        with self._guard:
            self._request_threads = [t for t in self._request_threads if t.is_alive()]
            self._request_threads.append(thread)
            self._connections.add(request)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._guard:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client went away (or idled out): nothing to report
        super().handle_error(request, client_address)  # pragma: no cover

    def drain(self, deadline: float) -> None:
        """Cut open connections and join request threads until ``deadline``."""
        with self._guard:
            connections, threads = list(self._connections), list(self._request_threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class LoopbackServer:
    """A running loopback HTTP server; :meth:`close` stops it within ``close_timeout``."""

    def __init__(
        self,
        respond: Callable[[HTTPRequest], HTTPReply],
        *,
        port: int = 0,
        close_timeout: float = 5.0,
    ) -> None:
        self._server = _HTTPServer(respond, port)
        self._close_timeout = close_timeout
        self.port: int = self._server.server_address[1]
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._accept, name="fake-issuer-server", daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        """Accept connections until :meth:`close` writes to the wake-up socket."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._server.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_reader in ready:
                    return
                self._server.handle_request()  # bounded by the server's accept timeout

    def close(self) -> None:
        """Stop accepting, end in-flight replies (slow and drip ones too) and join threads."""
        deadline = time.monotonic() + self._close_timeout
        self._server.stopping.set()
        self._wake_writer.send(b"x")
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
        self._server.drain(deadline)
        self._wake_reader.close()
        self._wake_writer.close()


class ServeContext(Generic[T]):
    """A sync and async context manager: ``start()`` on entry (its result is bound by
    ``as``), ``stop()`` on exit (in a worker thread under ``async with``)."""

    def __init__(self, start: Callable[[], T], stop: Callable[[], None]) -> None:
        self._start = start
        self._stop = stop

    def __enter__(self) -> T:
        return self._start()

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    async def __aenter__(self) -> T:
        return self._start()  # binds a socket and starts a thread: quick

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self._stop)
