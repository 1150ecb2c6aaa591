"""The in-process association server: one uvloop event loop serving every association.

``AE.start_server`` / ``AE.make_server`` build an :class:`AssociationServer`.
With ``block=True`` the loop runs in the calling thread until ``shutdown()``
(from another thread or a handler) or Ctrl-C; otherwise it runs in a
background thread. The listening socket is bound when the server is made,
so ``server_address`` is known at once (port 0 picks a free port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hsscp import events
from hsscp.aet import normalize_ae_title
from hsscp.limits import LocalLimiter
from hsscp.presentation import PresentationContext
from hsscp.protocol import AcceptorProtocol
from hsscp.service import AcceptorService
from hsscp.transport import bind_listener, new_event_loop

log = logging.getLogger("hsscp.server")

class AssociationServer:
    """Accepts associations for one AE on one address."""

    def __init__(
        self,
        ae: Any,
        address: tuple[str, int],
        ae_title: str | bytes,
        contexts: Sequence[PresentationContext],
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: list | None = None,
        max_handler_threads: int | None = None,
    ) -> None:
        self.ae = ae
        self.ssl_context = ssl_context
        self.socket = bind_listener(address)
        self._executor = ThreadPoolExecutor(max_handler_threads, thread_name_prefix="hsscp-handler")
        self.service = AcceptorService(
            ae,
            normalize_ae_title(ae_title),
            contexts,
            events.HandlerSet(evt_handlers),
            LocalLimiter(lambda: ae.maximum_associations),
            self._executor,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    @property
    def active_associations(self) -> list:
        return [p.assoc for p in self.service.protocols if p.assoc is not None and p.assoc.is_established]

    # pynetdicom's server lets handlers be bound and unbound while it runs.
    def bind(self, event, handler, args=None) -> None:
        self.service.handlers.bind(event, handler, args)

    def unbind(self, event, handler) -> None:
        self.service.handlers.unbind(event, handler)

    def get_handlers(self, event):
        return self.service.handlers.bound(event)  # pynetdicom's shapes

    def serve_forever(self) -> None:
        """Run the event loop in this thread until ``shutdown()``."""
        loop = new_event_loop()
        serving = loop.create_task(self._serve())
        try:
            loop.run_until_complete(serving)
        except KeyboardInterrupt:
            # Ctrl-C stops the loop mid-task: finish _serve (its cleanup aborts the open
            # associations) rather than leave a suspended coroutine for the garbage collector.
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(serving)
            raise
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self.socket.close()
            self._ready.set()
            self._finished.set()

    def start(self) -> AssociationServer:
        """Serve from a background thread; returns once connections are being accepted."""
        self._thread = threading.Thread(target=self.serve_forever, name="hsscp-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def shutdown(self) -> None:
        """Stop accepting, abort open associations and stop the loop; safe from any thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # the loop already closed
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        elif not self._ready.is_set():
            self.socket.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stop = loop, asyncio.Event()
        extra = {}
        if self.ssl_context is not None and self.ae.acse_timeout:
            # A peer that never finishes its handshake is dropped after the ACSE timeout.
            extra["ssl_handshake_timeout"] = self.ae.acse_timeout
        server = await loop.create_server(
            lambda: AcceptorProtocol(self.service), sock=self.socket, ssl=self.ssl_context, **extra
        )
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            self.service.abort_all()
            await asyncio.sleep(0)  # let the aborts reach the transports


def make_server(
    ae: Any,
    address: tuple[str, int],
    ae_title: str | bytes | None = None,
    contexts: Sequence[PresentationContext] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    evt_handlers: list | None = None,
    server_class: type | None = None,
    **kwargs: Any,
) -> AssociationServer:
    """Build (but do not start) a server for ``ae``; extra keywords go to ``server_class``."""
    if ae_title is None:
        ae_title = ae.ae_title
    if contexts is None:
        contexts = ae.supported_contexts
    if not contexts:
        raise ValueError("No supported presentation contexts: add some with add_supported_context()")
    if server_class is None:
        if kwargs.get("workers"):
            from workers.multiprocess_server import MultiprocessServer as server_class
        else:
            kwargs.pop("workers", None)
            server_class = AssociationServer
    return server_class(ae, address, ae_title, contexts, ssl_context, evt_handlers, **kwargs)
