"""The Application Entity: pynetdicom's ``ApplicationEntity`` API over hsscp.

Settings and the entry points for requesting associations
(:meth:`ApplicationEntity.associate`) and serving them
(:meth:`ApplicationEntity.start_server`); the presentation context lists
come from :mod:`hsscp.context_lists`. The protocol work happens in
:mod:`hsscp.association` (SCU) and :mod:`hsscp.server` (SCP), imported only
when first used so that ``import hsscp`` stays light.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from pydicom.uid import UID

from hsscp.acse import MAX_REQUESTED_CONTEXTS, AcceptorPolicy, LocalIdentity
from hsscp.ae_summary import describe_ae
from hsscp.aet import in_form_of, normalize_ae_title
from hsscp.context_lists import PresentationContextLists
from hsscp.events import normalize_handlers
from hsscp.presentation import PresentationContext
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, is_valid_uid
from hsscp.validation import (
    DEFAULT_MAX_PDU,
    check_address,
    check_contexts,
    check_version_name,
    is_number,
)

__all__ = ["AE", "ApplicationEntity"]

LOGGER = logging.getLogger("hsscp.ae")

DEFAULT_AE_TITLE = b"HSSCP"
_DEFAULT_ACSE_TIMEOUT = 30
_DEFAULT_DIMSE_TIMEOUT = 30
_DEFAULT_NETWORK_TIMEOUT = 60


def _timeout(value: Any, name: str, default: float) -> float | None:
    """A valid timeout, or pynetdicom's answer to an invalid one: warn, use the default."""
    if value is None or (is_number(value) and value >= 0):
        return value
    LOGGER.warning("%s set to %s s (invalid value %r)", name, default, value)
    return default


class ApplicationEntity(PresentationContextLists):
    """Represents a DICOM Application Entity (AE).

    An AE may be a Service Class Provider (SCP), a Service Class User (SCU)
    or both.

    Attributes (properties, validated when set): ``ae_title``,
    ``acse_timeout`` (30 s), ``dimse_timeout`` (30 s), ``network_timeout``
    (60 s), ``connection_timeout`` (None), ``maximum_associations`` (10),
    ``maximum_pdu_size`` (16382, 0 is unlimited), ``require_calling_aet``
    ([]), ``require_called_aet`` (False),
    ``implementation_class_uid``, ``implementation_version_name``,
    ``requested_contexts``, ``supported_contexts``, ``active_associations``.
    """

    def __init__(self, ae_title: str | bytes = DEFAULT_AE_TITLE) -> None:
        """Create a new Application Entity.

        Parameters
        ----------
        ae_title : bytes or str, optional
            The AE title of the Application Entity (default: ``b'HSSCP'``,
            where pynetdicom's is ``'PYNETDICOM'``). Given as bytes it reads
            back as 16 space-padded bytes, given as str it reads back as str.
        """
        self._ae_title: str | bytes = DEFAULT_AE_TITLE
        self._ae_title_str = ""
        self.ae_title = ae_title

        self._implementation_uid = IMPLEMENTATION_CLASS_UID
        self._implementation_version: str | bytes | None = IMPLEMENTATION_VERSION_NAME

        PresentationContextLists.__init__(self)

        self._maximum_associations = 10
        self._maximum_pdu_size = DEFAULT_MAX_PDU
        self._acse_timeout: float | None = _DEFAULT_ACSE_TIMEOUT
        self._dimse_timeout: float | None = _DEFAULT_DIMSE_TIMEOUT
        self._network_timeout: float | None = _DEFAULT_NETWORK_TIMEOUT
        self._connection_timeout: float | None = None

        self._require_calling_aet: list[str | bytes] = []
        self._require_called_aet = False

        # hsscp's own acceptor settings (not pynetdicom's): whose transfer syntax order wins,
        # and the syntaxes in which unknown abstract syntaxes are accepted (empty: refused).
        self.prefer_requestor_syntax = True
        self.promiscuous_syntaxes: list[str] = []

        self._lock = threading.Lock()
        self._associations: list[Any] = []
        self._servers: list[Any] = []

    # -- identity ----------------------------------------------------------

    @property
    def ae_title(self) -> str | bytes:
        """The local AE's AE title.

        Set with bytes, it reads back as length 16 bytes (space padded), as
        the API reference shows; set with str (as in pynetdicom 2+), as str
        without padding. Leading and trailing spaces are not significant.
        Raises ValueError for an empty, all-space or longer than 16 character
        title, or one with a backslash, control or non-ASCII characters.
        """
        return self._ae_title

    @ae_title.setter
    def ae_title(self, value: str | bytes) -> None:
        title = normalize_ae_title(value)
        self._ae_title_str = title
        self._ae_title = in_form_of(title, value)

    @property
    def implementation_class_uid(self) -> UID:
        """The current Implementation Class UID as str (a pydicom UID)."""
        return self._implementation_uid

    @implementation_class_uid.setter
    def implementation_class_uid(self, value: str) -> None:
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str):
            raise TypeError("'implementation_class_uid' must be str")
        uid = value.rstrip("\0 ")
        if not is_valid_uid(uid):
            raise ValueError(f"Invalid 'implementation_class_uid' value '{uid}'")
        self._implementation_uid = UID(uid)

    @property
    def implementation_version_name(self) -> str | bytes | None:
        """The current Implementation Version Name, in the form it was set.

        hsscp's own name (a str) by default; bytes (as the API reference
        shows) or str of 1 to 16 characters may be set, or None to send no
        Implementation Version Name item.
        """
        return self._implementation_version

    @implementation_version_name.setter
    def implementation_version_name(self, value: str | bytes | None) -> None:
        if value is not None:
            check_version_name(value)
        self._implementation_version = value

    @property
    def _implementation_version_name_str(self) -> str:
        """The version name as the protocol sends it ("" for none)."""
        value = self._implementation_version
        if value is None:
            return ""
        return value.decode("ascii") if isinstance(value, bytes | bytearray) else value

    # -- timeouts and limits ---------------------------------------------------

    @property
    def acse_timeout(self) -> float | None:
        """The ACSE timeout value (in seconds).

        The maximum amount of time (in seconds) to wait for association
        related messages. A value of None means no timeout. (default: 30)
        An invalid value is logged and replaced by the default, as in pynetdicom.
        """
        return self._acse_timeout

    @acse_timeout.setter
    def acse_timeout(self, value: float | None) -> None:
        self._acse_timeout = _timeout(value, "acse_timeout", _DEFAULT_ACSE_TIMEOUT)
        self._propagate("acse_timeout", self._acse_timeout)

    @property
    def dimse_timeout(self) -> float | None:
        """The DIMSE timeout (in seconds).

        The maximum amount of time (in seconds) to wait for DIMSE related
        messages. A value of None means no timeout. (default: 30)
        """
        return self._dimse_timeout

    @dimse_timeout.setter
    def dimse_timeout(self, value: float | None) -> None:
        self._dimse_timeout = _timeout(value, "dimse_timeout", _DEFAULT_DIMSE_TIMEOUT)
        self._propagate("dimse_timeout", self._dimse_timeout)

    @property
    def network_timeout(self) -> float | None:
        """The network timeout (in seconds).

        The maximum amount of time (in seconds) to wait for network
        messages. A value of None means no timeout. (default: 60)
        """
        return self._network_timeout

    @network_timeout.setter
    def network_timeout(self, value: float | None) -> None:
        self._network_timeout = _timeout(value, "network_timeout", _DEFAULT_NETWORK_TIMEOUT)
        self._propagate("network_timeout", self._network_timeout)

    @property
    def connection_timeout(self) -> float | None:
        """The connection timeout (in seconds).

        How long a requested association may take to establish its TCP (and
        TLS) connection. None (the default) means no timeout; anything but a
        positive number is logged and replaced by None, as in pynetdicom.
        """
        return self._connection_timeout

    @connection_timeout.setter
    def connection_timeout(self, value: float | None) -> None:
        # Zero is refused too: it would make the socket non-blocking.
        if value is not None and not (is_number(value) and value > 0):
            LOGGER.warning("connection_timeout set to None")
            value = None
        self._connection_timeout = value
        self._propagate("connection_timeout", value)

    def _propagate(self, name: str, value: float | None) -> None:
        # As in pynetdicom, a new timeout also applies to the live associations.
        for assoc in self.active_associations:
            if hasattr(assoc, name):
                setattr(assoc, name, value)

    @property
    def maximum_associations(self) -> int:
        """The number of maximum simultaneous associations as int.

        The maximum number of simultaneous associations requested by remote
        AEs; associations requested by the local AE do not count (default 10).
        A value below 1 is logged and replaced by 1, as in pynetdicom.
        """
        return self._maximum_associations

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            self._maximum_associations = value
        else:
            LOGGER.warning("maximum_associations set to 1 (invalid value %r)", value)
            self._maximum_associations = 1

    @property
    def maximum_pdu_size(self) -> int:
        """The maximum PDU size accepted by the AE as int.

        The maximum PDU receive size in bytes. A value of 0 means the PDU size
        is unlimited (default: 16382). An invalid value is logged and replaced
        by the default.
        """
        return self._maximum_pdu_size

    @maximum_pdu_size.setter
    def maximum_pdu_size(self, value: int) -> None:
        # The Maximum Length sub-item holds 32 bits (PS3.8 D.1).
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF:
            self._maximum_pdu_size = value
        else:
            LOGGER.warning("maximum_pdu_size set to %d (invalid value %r)", DEFAULT_MAX_PDU, value)
            self._maximum_pdu_size = DEFAULT_MAX_PDU

    # -- acceptor checks ---------------------------------------------------------

    @property
    def require_called_aet(self) -> bool:
        """Whether the Called AE Title must match the AE title.

        Association acceptor only. If True, the association request's Called
        AE Title value must match ae_title (default False).
        """
        return self._require_called_aet

    @require_called_aet.setter
    def require_called_aet(self, require_match: bool) -> None:
        if not isinstance(require_match, bool):
            raise TypeError("'require_called_aet' must be a bool")
        self._require_called_aet = require_match

    @property
    def require_calling_aet(self) -> list[str | bytes]:
        """The required calling AE titles, each in the form it was given.

        Association acceptor only. If not an empty list, the association
        request's Calling AE Title value must match one of the values in
        require_calling_aet. If an empty list then no matching will be
        performed (default). Items may be bytes (read back padded to 16) or
        str; each is validated like ``ae_title``.
        """
        return list(self._require_calling_aet)

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: Iterable[str | bytes]) -> None:
        if isinstance(ae_titles, str | bytes) or not isinstance(ae_titles, Iterable):
            raise TypeError("'require_calling_aet' must be a list of AE titles")
        self._require_calling_aet = [
            in_form_of(normalize_ae_title(title), title) for title in ae_titles
        ]

    @property
    def _require_calling_aet_str(self) -> list[str]:
        """The required calling AE titles as the protocol compares them."""
        return [normalize_ae_title(title) for title in self._require_calling_aet]

    def _local_identity(self, ae_title: str | bytes | None = None) -> LocalIdentity:
        """What this AE says about itself in A-ASSOCIATE PDUs."""
        title = self._ae_title_str if ae_title is None else normalize_ae_title(ae_title)
        return LocalIdentity(
            ae_title=title,
            maximum_pdu_size=self._maximum_pdu_size,
            implementation_class_uid=str(self._implementation_uid),
            implementation_version_name=self._implementation_version_name_str,
        )

    def _acceptor_policy(
        self,
        ae_title: str | bytes | None = None,
        contexts: Sequence[PresentationContext] | None = None,
    ) -> AcceptorPolicy:
        """The AE's acceptor settings now, for :func:`hsscp.acse.answer_request`."""
        return AcceptorPolicy(
            identity=self._local_identity(ae_title),
            supported_contexts=list(contexts) if contexts else self.supported_contexts,
            require_called_aet=self._require_called_aet,
            require_calling_aet=self._require_calling_aet_str,
            prefer_proposed=self.prefer_requestor_syntax,
            promiscuous_syntaxes=tuple(self.promiscuous_syntaxes),
        )

    # -- associations ------------------------------------------------------------

    @property
    def active_associations(self) -> list[Any]:
        """Return a list of the AE's active associations.

        Both requestors (made by :meth:`associate`) and acceptors (of this
        AE's in-process servers).
        """
        with self._lock:
            return list(self._associations)

    def _register(self, assoc: Any) -> None:
        """Record a live association (called by the association and server code)."""
        with self._lock:
            if not any(known is assoc for known in self._associations):
                self._associations.append(assoc)

    def _unregister(self, assoc: Any) -> None:
        """Forget an association that has ended; unknown ones are ignored."""
        with self._lock:
            self._associations = [known for known in self._associations if known is not assoc]

    def associate(
        self,
        addr: str | tuple[str, int, int],
        port: int,
        contexts: Sequence[PresentationContext] | None = None,
        ae_title: str | bytes = b"ANY-SCP",
        max_pdu: int = DEFAULT_MAX_PDU,
        ext_neg: list[Any] | None = None,
        bind_address: tuple[str, int] = ("", 0),
        tls_args: tuple[Any, str] | None = None,
        evt_handlers: list[tuple[Any, ...]] | None = None,
    ) -> Any:
        """Request an association with a remote AE.

        An Association is returned whether or not the association is accepted
        and should be checked using ``Association.is_established`` before
        sending any messages.

        Parameters
        ----------
        addr : str
            The peer AE's TCP/IP address.
        port : int
            The peer AE's listen port number.
        contexts : list of presentation.PresentationContext, optional
            The presentation contexts to request; :attr:`requested_contexts`
            if not used.
        ae_title : bytes or str, optional
            The peer's AE title, the Called AE Title (default ``b'ANY-SCP'``).
        max_pdu : int, optional
            The maximum PDU receive size in bytes to negotiate (default
            16382); 0 means unlimited.
        ext_neg : list, optional
            Extra User Information sub-items for extended negotiation.
        bind_address : 2-tuple, optional
            The (host, port) to bind the association's socket to.
        tls_args : 2-tuple, optional
            ``(ssl_context, server_hostname)`` to use TLS.
        evt_handlers : list of 2- or 3-tuple, optional
            ``(event, handler)`` or ``(event, handler, args)`` bindings.

        Raises
        ------
        RuntimeError
            If called with no requested presentation contexts (i.e. `contexts`
            has not been supplied and :attr:`requested_contexts` is empty).
        """
        check_address(addr, port)
        contexts = check_contexts(contexts or self._requested_contexts)
        if not contexts:
            raise RuntimeError(
                "At least one requested presentation context is required "
                "before associating with a peer"
            )
        if len(contexts) > MAX_REQUESTED_CONTEXTS:
            raise ValueError("The maximum allowed number of requested presentation contexts is 128")
        normalize_ae_title(ae_title)  # fail here, not half-way through connecting
        normalize_handlers(evt_handlers)

        from hsscp.association import open_association

        return open_association(
            self,
            addr,
            port,
            contexts=contexts,
            ae_title=ae_title,
            max_pdu=max_pdu,
            ext_neg=ext_neg,
            bind_address=bind_address,
            tls_args=tls_args,
            evt_handlers=evt_handlers,
        )

    def make_server(
        self,
        address: tuple[str, int] | tuple[str, int, int, int],
        ae_title: str | bytes | None = None,
        contexts: Sequence[PresentationContext] | None = None,
        ssl_context: Any = None,
        evt_handlers: list[tuple[Any, ...]] | None = None,
        server_class: type | None = None,
        **kwargs: Any,
    ) -> Any:
        """Return an association server.

        Allows the use of a custom association server class. Accepts the same
        parameters as :meth:`start_server`; additional keyword parameters are
        passed to the constructor of `server_class`.

        Raises ValueError if no presentation contexts are supported, or one
        sets only one of ``scu_role``/``scp_role``.
        """
        contexts = check_contexts(contexts) if contexts else self.supported_contexts
        if not contexts:
            raise ValueError("No supported Presentation Contexts have been defined")
        inconsistent = [
            str(cx.abstract_syntax)
            for cx in contexts
            if (cx.scu_role is None) != (cx.scp_role is None)
        ]
        if inconsistent:
            raise ValueError(
                "The following presentation contexts have inconsistent "
                "scu_role/scp_role values (if one is None, both must be):\n  "
                + "\n  ".join(inconsistent)
            )
        title = self._ae_title_str if not ae_title else normalize_ae_title(ae_title)
        normalize_handlers(evt_handlers)

        from hsscp.server import make_server

        return make_server(
            self,
            address,
            ae_title=title,
            contexts=contexts,
            ssl_context=ssl_context,
            evt_handlers=evt_handlers or [],
            server_class=server_class,
            **kwargs,
        )

    def start_server(
        self,
        address: tuple[str, int] | tuple[str, int, int, int],
        block: bool = True,
        ssl_context: Any = None,
        evt_handlers: list[tuple[Any, ...]] | None = None,
        ae_title: str | bytes | None = None,
        contexts: Sequence[PresentationContext] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start the AE as an association acceptor.

        If `block` is False the server runs in a background thread and is
        returned; stop it with ``server.shutdown()`` or :meth:`shutdown`.
        Otherwise this serves until shut down and returns None.

        Parameters
        ----------
        address : 2-tuple
            The (host, port) to listen on for association requests.
        block : bool, optional
            Serve in this thread (default) or in a new one.
        ssl_context : ssl.SSLContext, optional
            Wrap accepted connections with TLS.
        evt_handlers : list of 2- or 3-tuple, optional
            ``(event, handler)`` or ``(event, handler, args)`` bindings.
        ae_title : bytes or str, optional
            The AE title of this SCP; :attr:`ae_title` if not used.
        contexts : list of presentation.PresentationContext, optional
            The contexts to support; :attr:`supported_contexts` if not used.
        """
        server = self.make_server(
            address,
            ae_title=ae_title,
            contexts=contexts,
            ssl_context=ssl_context,
            evt_handlers=evt_handlers,
            **kwargs,
        )
        with self._lock:
            self._servers.append(server)
        if not block:
            try:
                server.start()
            except BaseException:
                self._forget_server(server)
                raise
            return server
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.shutdown()
        finally:
            self._forget_server(server)
        return None

    def _forget_server(self, server: Any) -> None:
        with self._lock:
            self._servers = [known for known in self._servers if known is not server]

    def shutdown(self) -> None:
        """Stop any active association servers and threads.

        Servers are shut down first (ending their associations), then any
        association still active (the ones this AE requested) is aborted.
        """
        with self._lock:
            servers, self._servers = self._servers, []
        for server in servers:
            try:
                server.shutdown()
            except Exception:
                LOGGER.exception("Failed to shut down the association server %r", server)
        for assoc in self.active_associations:
            try:
                assoc.abort()
            except Exception:
                LOGGER.exception("Failed to abort the association %r", assoc)

    def __str__(self) -> str:
        """A summary of the AE's settings and associations, laid out like pynetdicom's."""
        return describe_ae(self)


AE = ApplicationEntity
