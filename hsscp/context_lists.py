"""Which presentation contexts an AE requests and supports, as pynetdicom's AE manages them.

:class:`PresentationContextLists` is the part of the ``ApplicationEntity``
API that adds and removes requested and supported contexts. The AE keeps
copies it owns, so a caller's (or a module-level) context never changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import UID

from hsscp.acse import MAX_REQUESTED_CONTEXTS
from hsscp.presentation import PresentationContext, build_context
from hsscp.validation import check_contexts

__all__ = ["PresentationContextLists", "TransferSyntaxes", "copy_context"]

TransferSyntaxes = str | bytes | Iterable[str | bytes] | None

_TOO_MANY_REQUESTED = (
    "Failed to add the requested presentation context as there "
    "are already the maximum allowed number of requested contexts"
)


def copy_context(context: PresentationContext) -> PresentationContext:
    """A copy with the same syntaxes and SCP/SCU roles, for the copy's owner to change."""
    copy = build_context(context.abstract_syntax, context.transfer_syntax)  # type: ignore[arg-type]
    copy.scu_role, copy.scp_role = context.scu_role, context.scp_role
    return copy


class PresentationContextLists:
    """The requested and supported presentation contexts of an Application Entity."""

    def __init__(self) -> None:
        self._requested_contexts: list[PresentationContext] = []
        # Keyed by abstract syntax: an acceptor supports each one once.
        self._supported_contexts: dict[str, PresentationContext] = {}

    # -- requested contexts ----------------------------------------------------

    @property
    def requested_contexts(self) -> list[PresentationContext]:
        """A list of the requested PresentationContext items.

        Setting it adds copies of the given contexts to the requested ones, as
        pynetdicom does (an empty list clears them); the given contexts are
        never modified. Raises ValueError past 128 contexts.
        """
        return self._requested_contexts

    @requested_contexts.setter
    def requested_contexts(self, contexts: Iterable[PresentationContext]) -> None:
        if not contexts:
            self._requested_contexts = []
            return
        contexts = check_contexts(contexts)
        if len(contexts) > MAX_REQUESTED_CONTEXTS:
            raise ValueError("The maximum allowed number of requested presentation contexts is 128")
        if len(self._requested_contexts) + len(contexts) > MAX_REQUESTED_CONTEXTS:
            raise ValueError(_TOO_MANY_REQUESTED)
        self._requested_contexts.extend(copy_context(context) for context in contexts)

    def add_requested_context(
        self, abstract_syntax: str | bytes, transfer_syntax: TransferSyntaxes = None
    ) -> None:
        """Add a presentation context to be proposed when requesting an association.

        Only 128 presentation contexts can be included in the association
        request. Multiple presentation contexts may be requested with the same
        abstract syntax.

        Parameters
        ----------
        abstract_syntax : str or pydicom.uid.UID
            The abstract syntax of the presentation context to request.
        transfer_syntax : str/pydicom.uid.UID or list of str/pydicom.uid.UID
            The transfer syntax(es) to request (default: Implicit VR Little
            Endian, Explicit VR Little Endian, Explicit VR Big Endian).

        Raises
        ------
        ValueError
            If 128 requested presentation contexts have already been added.
        """
        if len(self._requested_contexts) >= MAX_REQUESTED_CONTEXTS:
            raise ValueError(_TOO_MANY_REQUESTED)
        self._requested_contexts.append(
            build_context(abstract_syntax, _syntax_list(transfer_syntax))
        )

    def remove_requested_context(
        self, abstract_syntax: str | bytes, transfer_syntax: TransferSyntaxes = None
    ) -> None:
        """Remove a requested presentation context.

        * `abstract_syntax` alone: all contexts with a matching abstract syntax
          are removed.
        * `abstract_syntax` and `transfer_syntax`: for all contexts with a
          matching abstract syntax, the listed transfer syntaxes are removed,
          and a context left with none is removed entirely.
        """
        uid = _as_uid(abstract_syntax)
        syntaxes = _syntax_list(transfer_syntax)
        kept = []
        for context in self._requested_contexts:
            if context.abstract_syntax == uid and (
                syntaxes is None or _remove_syntaxes(context, syntaxes)
            ):
                continue
            kept.append(context)
        # In place: the list handed out by requested_contexts stays current.
        self._requested_contexts[:] = kept

    # -- supported contexts ----------------------------------------------------

    @property
    def supported_contexts(self) -> list[PresentationContext]:
        """A list of the supported PresentationContext items, ordered by abstract syntax.

        Setting it merges copies of the given contexts into the supported ones
        (with their SCP/SCU roles), as pynetdicom does; an empty list clears
        them. The given contexts are never modified.
        """
        return sorted(self._supported_contexts.values(), key=lambda cx: str(cx.abstract_syntax))

    @supported_contexts.setter
    def supported_contexts(self, contexts: Iterable[PresentationContext]) -> None:
        if not contexts:
            self._supported_contexts = {}
            return
        for context in check_contexts(contexts):
            self.add_supported_context(
                context.abstract_syntax,  # type: ignore[arg-type]
                context.transfer_syntax,
                scu_role=context.scu_role,
                scp_role=context.scp_role,
            )

    def add_supported_context(
        self,
        abstract_syntax: str | bytes,
        transfer_syntax: TransferSyntaxes = None,
        scu_role: bool | None = None,
        scp_role: bool | None = None,
    ) -> None:
        """Add a presentation context to be supported when accepting association requests.

        Where the abstract syntax is already supported the transfer syntaxes
        are extended by those supplied in `transfer_syntax` (and the roles
        replaced by `scu_role`/`scp_role`).

        Parameters
        ----------
        abstract_syntax : str, pydicom.uid.UID or sop_class.SOPClass
            The abstract syntax of the presentation context to be supported.
        transfer_syntax : str/pydicom.uid.UID or list of str/pydicom.uid.UID
            The transfer syntax(es) to support (default: Implicit VR Little
            Endian, Explicit VR Little Endian, Explicit VR Big Endian).
        scu_role, scp_role : bool or None, optional
            If the requestor includes an SCP/SCU Role Selection Negotiation
            item for this context: None ignores the proposal (if either is
            None both are) and uses the default roles; True accepts and False
            rejects the proposed role.
        """
        if scu_role is not None and not isinstance(scu_role, bool):
            raise TypeError("`scu_role` must be None or bool")
        if scp_role is not None and not isinstance(scp_role, bool):
            raise TypeError("`scp_role` must be None or bool")
        new = build_context(abstract_syntax, _syntax_list(transfer_syntax))
        key = str(new.abstract_syntax)
        context = self._supported_contexts.get(key)
        if context is None:
            self._supported_contexts[key] = context = new
        else:
            for syntax in new.transfer_syntax:
                context.add_transfer_syntax(syntax)
        context.scu_role, context.scp_role = scu_role, scp_role

    def remove_supported_context(
        self, abstract_syntax: str | bytes, transfer_syntax: TransferSyntaxes = None
    ) -> None:
        """Remove a supported presentation context.

        * `abstract_syntax` alone: the entire supported context is removed.
        * `abstract_syntax` and `transfer_syntax`: the listed transfer
          syntaxes are removed, and the context too if none remain.
        """
        key = str(_as_uid(abstract_syntax))
        context = self._supported_contexts.get(key)
        if context is None:
            return  # not supported: the caller's intent already holds
        syntaxes = _syntax_list(transfer_syntax)
        if syntaxes is None or _remove_syntaxes(context, syntaxes):
            del self._supported_contexts[key]


def _as_uid(value: str | bytes) -> UID:
    """`value` as the UID a context would hold (padding stripped, length checked)."""
    context = PresentationContext()
    context.abstract_syntax = value
    return context.abstract_syntax  # type: ignore[return-value]


def _syntax_list(transfer_syntax: TransferSyntaxes) -> list[str | bytes] | None:
    if transfer_syntax is None:
        return None
    if isinstance(transfer_syntax, str | bytes):
        return [transfer_syntax]
    return list(transfer_syntax)


def _remove_syntaxes(context: PresentationContext, syntaxes: Iterable[str | bytes]) -> bool:
    """Drop `syntaxes` from `context`; True if it has none left."""
    unwanted = {str(_as_uid(syntax)) for syntax in syntaxes}
    context.transfer_syntax = [ts for ts in context.transfer_syntax if str(ts) not in unwanted]
    return not context.transfer_syntax
