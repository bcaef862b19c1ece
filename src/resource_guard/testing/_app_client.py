"""AppClient: call an ASGI app in-process, synchronously, with its lifespan running."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._checks import finite_seconds

__all__ = ["AppClient"]

T = TypeVar("T")

_LIFESPAN_FAILED = ("lifespan.startup.failed", "lifespan.shutdown.failed")


class AppClient:
    """A synchronous httpx client for an ASGI app (FastAPI, Starlette...), without a server.

    The app runs on an event loop in a background thread. :meth:`start` (or ``with``) runs
    the app's lifespan start-up, so :class:`~resource_guard.BearerAuthMiddleware` fetches
    its keys as in production; :meth:`close` runs the shutdown. Requests return
    :class:`httpx.Response` objects; an exception raised by the app propagates. Apps
    without lifespan support are called all the same. WebSockets are not supported.

    Args:
        app: the ASGI application.
        base_url: the URL requests are relative to.
        headers: headers sent with every request.
        timeout: seconds one request, the start-up or the shutdown may take.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        base_url: str = "http://testserver",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not callable(app):
            raise TypeError("app must be an ASGI application (a callable)")
        if finite_seconds("timeout", timeout) <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._app = app
        self._timeout = float(timeout)
        self._state: dict[str, Any] = {}
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._with_state),
            base_url=base_url,
            headers=dict(headers or {}),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lifespan: asyncio.Task[None] | None = None
        self._lifespan_error: Exception | None = None
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message | None] = asyncio.Queue()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._loop else "not started"
        return f"AppClient({self._client.base_url!s}, {state})"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Start the event loop thread and run the app's lifespan start-up. Idempotent.

        Raises :class:`RuntimeError` when the app reports that its start-up failed.
        """
        if self._closed:
            raise RuntimeError("this AppClient is closed; make a new one")
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="resource-guard-app-client", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._startup())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Run the app's lifespan shutdown, close the client and stop the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._run(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self._timeout)
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            if leftovers:  # let them finish cancelling, so none is destroyed pending
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(asyncio.wait(leftovers, timeout=self._timeout))
            loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"the app did not finish within {self._timeout:g} s") from None

    # -- lifespan ------------------------------------------------------------------------

    async def _with_state(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"] = dict(self._state)  # what the lifespan yielded, for each request
        await self._app(scope, receive, send)

    async def _run_lifespan(self) -> None:
        from_app = self._from_app

        async def send(message: Message) -> None:
            from_app.put_nowait(message)

        scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self._state,
        }
        try:
            await self._app(scope, self._to_app.get, send)
        except Exception as exc:  # apps without lifespan support raise: carry on then
            self._lifespan_error = exc
        finally:
            from_app.put_nowait(None)  # the app returned: no more messages

    async def _startup(self) -> None:
        self._lifespan = asyncio.get_running_loop().create_task(self._run_lifespan())
        self._to_app.put_nowait({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message is None:
            self._lifespan = None  # no lifespan support
            return
        if message["type"] in _LIFESPAN_FAILED:
            await self._lifespan
            raise self._failure("start-up", message)

    async def _shutdown(self) -> None:
        lifespan = self._lifespan
        try:
            if lifespan is not None and not lifespan.done():
                self._to_app.put_nowait({"type": "lifespan.shutdown"})
                message = await self._from_app.get()
                await lifespan
                if message is not None and message["type"] in _LIFESPAN_FAILED:
                    raise self._failure("shutdown", message)
        finally:
            await self._client.aclose()

    def _failure(self, stage: str, message: Message) -> RuntimeError:
        """The error for a failed lifespan stage, caused by the app's own exception."""
        lines = str(message.get("message") or "").strip().splitlines()
        reason = lines[-1] if lines else "no reason given"  # Starlette sends a traceback
        error = RuntimeError(f"the app's lifespan {stage} failed: {reason}")
        error.__cause__ = self._lifespan_error
        return error

    # -- requests ------------------------------------------------------------------------

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        """Send one request (``options`` as for :meth:`httpx.AsyncClient.request`).

        Starts the client first if needed.
        """
        self.start()
        return self._run(self._client.request(method, url, **options))

    def get(self, url: str, **options: Any) -> httpx.Response:
        """``GET url``."""
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        """``POST url``."""
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Any) -> httpx.Response:
        """``PUT url``."""
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Any) -> httpx.Response:
        """``PATCH url``."""
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Any) -> httpx.Response:
        """``DELETE url``."""
        return self.request("DELETE", url, **options)

    def head(self, url: str, **options: Any) -> httpx.Response:
        """``HEAD url``."""
        return self.request("HEAD", url, **options)

    def options(self, url: str, **options: Any) -> httpx.Response:
        """``OPTIONS url``."""
        return self.request("OPTIONS", url, **options)
