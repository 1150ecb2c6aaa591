"""``AE.start_server(..., workers=N)``: the pre-fork supervisor behind the pynetdicom API.

The user's event handlers are inherited by the workers at fork and run
there; without an ``EVT_C_STORE`` handler the built-in writer pool stores
under ``output_directory``. ``block=True`` runs the supervisor in the
calling process; otherwise it runs in a child process and ``shutdown()``
stops it gracefully, as the end of the calling process does
(:mod:`workers.lifeline`).
"""

from __future__ import annotations

import os
import signal
import ssl
from collections.abc import Sequence
from typing import Any

from hsscp.aet import normalize_ae_title
from hsscp.config import ProcessSettings
from hsscp.transport import bind_listener
from workers.lifeline import Lifeline
from workers.scp import StorageSCP


class MultiprocessServer:
    def __init__(
        self,
        ae: Any,
        address: tuple[str, int],
        ae_title: str | bytes,
        contexts: Sequence,
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: list | None = None,
        workers: int = 2,
        writers: int | None = None,
        output_directory: str = "received",
        **settings: Any,
    ) -> None:
        self.ae = ae
        self.ae_title = normalize_ae_title(ae_title)
        self.contexts = list(contexts)
        self.ssl_context = ssl_context
        self.evt_handlers = evt_handlers
        # Protocol settings stay on the AE; checked before the port is taken.
        self.settings = ProcessSettings(
            workers=workers,
            writers=writers or workers,
            output_directory=str(output_directory),
            **settings,
        )
        self.socket = bind_listener(address)  # bound now, so port 0 is known at once
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._child = 0
        self._lifeline: Lifeline | None = None

    def serve_forever(self) -> None:
        StorageSCP(
            self.ae,
            self.settings,
            listener=self.socket,
            ae_title=self.ae_title,
            contexts=self.contexts,
            evt_handlers=self.evt_handlers,
            ssl_context=self.ssl_context,
        ).run()

    def start(self) -> MultiprocessServer:
        lifeline = Lifeline()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                lifeline.watch()  # this process ending stops the server, as shutdown() does
                self.serve_forever()
                code = 0
            finally:
                os._exit(code)
        lifeline.hold()
        self._lifeline = lifeline
        self._child = pid
        self.socket.close()  # the child owns the listener now
        return self

    def shutdown(self) -> None:
        """Stop gracefully: open associations finish, then everything exits."""
        if self._child:
            try:
                os.kill(self._child, signal.SIGTERM)
                os.waitpid(self._child, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._child = 0
        if self._lifeline is not None:
            self._lifeline.release()
            self._lifeline = None
