"""The log lines pynetdicom prints for an exchange, for both sides of hsscp to print alike.

At INFO: association requested/accepted/rejected/released/aborted and each
DIMSE message with its status ("Received Echo Response (Status: 0x0000 -
Success)"); at DEBUG, the A-ASSOCIATE/A-ABORT parameter summaries and the
DIMSE message blocks, laid out as pynetdicom's standard handlers lay them
out. The SCP's lines and the per-message lines of both sides go to
``hsscp.exchange`` (:data:`EXCHANGE_LOG`), so that a server can log
its own line per event without a line per message. Every function checks the logger's level first, so a disabled level
costs a method call and no formatting; values a peer chose (AE titles) are
escaped before they reach a log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydicom.uid import UID

from hsscp import dimse, items
from hsscp.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ
from hsscp.status import STORAGE_SERVICE_CLASS_STATUS

__all__ = [
    "EXCHANGE_LOG",
    "log_abort",
    "log_associate_ac",
    "log_associate_rj",
    "log_associate_rq",
    "log_message",
    "rejection_words",
    "status_text",
]

EXCHANGE_LOG = logging.getLogger("hsscp.exchange")

_RULE = 76
_RESULTS = {1: "Rejected (Permanent)", 2: "Rejected (Transient)"}
_SOURCES = {
    1: "DUL service-user",
    2: "DUL service-provider (ACSE related)",
    3: "DUL service-provider (presentation related)",
}
_REASONS = {
    1: {1: "No reason given", 2: "Application context name not supported",
        3: "Calling AE title not recognised", 7: "Called AE title not recognised"},
    2: {1: "No reason given", 2: "Protocol version not supported"},
    3: {1: "Temporary congestion", 2: "Local limit exceeded"},
}  # fmt: skip
_ABORT_SOURCES = {0: "DUL service-user", 1: "Reserved", 2: "DUL service-provider"}
_ABORT_REASONS = {
    0: "No reason given", 1: "Unrecognised PDU", 2: "Unexpected PDU", 3: "Reserved",
    4: "Unrecognised PDU parameter", 5: "Unexpected PDU parameter", 6: "Invalid PDU parameter value",
}  # fmt: skip
_CONTEXT_RESULTS = {
    0: "Accepted", 1: "User Rejection", 2: "Provider Rejection",
    3: "Rejected - Abstract Syntax Not Supported", 4: "Rejected - Transfer Syntax Not Supported",
}  # fmt: skip
_IDENTITY_TYPES = {1: "Username", 2: "Username/Password", 3: "Kerberos", 4: "SAML", 5: "JSON Web Token"}
_PRIORITIES = {0: "Medium", 1: "High", 2: "Low"}
def status_text(status: int, service: str = "store") -> str:
    """``0x0000 - Success``: a status as pynetdicom prints it (C-ECHO knows only Success)."""
    if service == "echo":
        name = "Success" if status == 0 else "Unknown"
    else:
        category, description = STORAGE_SERVICE_CLASS_STATUS.get(status, ("Unknown", ""))
        name = description or category
    return f"0x{status:04X} - {name}"


def _printable(text: str | bytes) -> str:
    """``text`` as it is when printable, its control (and non-ASCII) characters escaped otherwise.

    A peer's AE titles and UIDs reach these lines; none may start a line of its own.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("latin-1")
    text = text.strip(" \0")
    return text if text.isascii() and text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _uid_name(uid: str) -> str:
    """A UID's name where pydicom knows it, else the UID: escaped, as a peer chose it."""
    return _printable(UID(uid).name)


def _emit(log: logging.Logger, lines: list[str]) -> None:
    for line in lines:
        log.debug(line)


def _banner(text: str) -> str:
    return f"{f' {text} ':=^{_RULE}}"


def _roles(user_info: items.UserInformation) -> dict[str, str]:
    """Each role selection as pynetdicom prints it: "SCP/SCU", "SCU", "SCP" or ""."""
    return {
        role.sop_class_uid: "/".join(name for name, on in (("SCP", role.scp_role), ("SCU", role.scu_role)) if on)
        for role in user_info.role_selections
    }


def _extended_lines(user_info: items.UserInformation, heading: str) -> list[str]:
    extended = user_info.all(items.SOPClassExtendedNegotiation)
    if not extended:
        return [f"{heading} Extended Negotiation: None"]
    lines = [f"{heading} Extended Negotiation:"]
    for item in extended:
        lines.append(f"  SOP Class: ={_printable(item.sop_class_uid)}")
        data = item.service_class_application_information
        lines += ["    " + " ".join(f"{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)]
    return lines


def _common_lines(user_info: items.UserInformation) -> list[str]:
    common = user_info.all(items.SOPClassCommonExtendedNegotiation)
    if not common:
        return ["Requested Common Extended Negotiation: None"]
    lines = ["Requested Common Extended Negotiation:"]
    for item in common:
        lines += [f"  SOP Class: ={_uid_name(item.sop_class_uid)}",
                  f"    Service Class: ={_uid_name(item.service_class_uid)}"]  # fmt: skip
        if item.related_general_sop_class_uids:
            lines.append("    Related General SOP Class(es):")
            lines += [f"      ={_uid_name(uid)}" for uid in item.related_general_sop_class_uids]
        else:
            lines.append("    Related General SOP Classes: None")
    return lines


def _window_lines(user_info: items.UserInformation, heading: str) -> list[str]:
    window = user_info.async_operations_window
    if window is None:
        return [f"{heading} Asynchronous Operations Window Negotiation: None"]
    return [
        f"{heading} Asynchronous Operations Window Negotiation:",
        f"  Maximum Invoked Operations:     {window.max_invoked}",
        f"  Maximum Performed Operations:   {window.max_performed}",
    ]


def _identity_lines(user_info: items.UserInformation) -> list[str]:
    identity = user_info.first(items.UserIdentityRQ)
    if identity is None:
        return ["Requested User Identity Negotiation: None"]
    kind = identity.identity_type
    lines = ["Requested User Identity Negotiation:",
             f"  Authentication Mode: {kind} - {_IDENTITY_TYPES.get(kind, '(no value available)')}"]  # fmt: skip
    if kind in (1, 2):  # never the passcode: a log is no place for it
        lines.append(f"  Username: [{_printable(identity.primary_field.decode('utf-8', 'replace'))}]")
    else:
        lines.append(f"  {_IDENTITY_TYPES.get(kind, 'Identity')} (not dumped) length: {len(identity.primary_field)}")
    requested = "Yes" if identity.positive_response_requested else "No"
    lines.append(f"  Positive Response Requested: {requested}")
    return lines


def log_associate_rq(log: logging.Logger, rq: AAssociateRQ, outgoing: bool) -> None:
    """"Request Parameters:" and the A-ASSOCIATE-RQ summary, at DEBUG."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    info = rq.user_information
    ours = "Our" if outgoing else "Their"
    lines = [
        "Request Parameters:",
        _banner(f"{'OUTGOING' if outgoing else 'INCOMING'} A-ASSOCIATE-RQ PDU"),
        f"{ours} Implementation Class UID:      {_printable(info.implementation_class_uid or 'unknown')}",
    ]
    version = info.implementation_version_name
    if version or not outgoing:
        lines.append(f"{ours} Implementation Version Name:   {_printable(version or 'unknown')}")
    lines += [
        f"Application Context Name:    {_printable(rq.application_context)}",
        f"Calling Application Name:    {_printable(rq.calling_ae_title)}",
        f"Called Application Name:     {_printable(rq.called_ae_title)}",
        f"{ours} Max PDU Receive Size:  {'  ' if outgoing else ''}{info.maximum_length}",
        "Presentation Context:" if len(rq.presentation_contexts) == 1 else "Presentation Contexts:",
    ]
    roles = _roles(info)
    for pc in sorted(rq.presentation_contexts, key=lambda pc: pc.context_id):
        syntaxes = pc.transfer_syntaxes
        lines += [
            f"  Context ID:        {pc.context_id} (Proposed)",
            f"    Abstract Syntax: ={_uid_name(pc.abstract_syntax)}",
            f"    Proposed SCP/SCU Role: {roles.get(pc.abstract_syntax, 'Default')}",
            "    Proposed Transfer Syntax:" if len(syntaxes) == 1 else "    Proposed Transfer Syntaxes:",
            *(f"      ={_uid_name(ts)}" for ts in syntaxes),
        ]
    lines += _extended_lines(info, "Requested")
    lines += _common_lines(info)
    lines += _window_lines(info, "Requested")
    lines += _identity_lines(info)
    lines.append(_banner("END A-ASSOCIATE-RQ PDU"))
    _emit(log, lines)


def log_associate_ac(
    log: logging.Logger, ac: AAssociateAC, abstract_syntaxes: Mapping[int, str], outgoing: bool
) -> None:
    """"Accept Parameters:" and the A-ASSOCIATE-AC summary, at DEBUG.

    ``abstract_syntaxes`` maps the requested context IDs to their abstract
    syntax, which an A-ASSOCIATE-AC does not repeat.
    """
    if not log.isEnabledFor(logging.DEBUG):
        return
    info = ac.user_information
    lines = ["Accept Parameters:", _banner(f"{'OUTGOING' if outgoing else 'INCOMING'} A-ASSOCIATE-AC PDU")]
    if outgoing:
        lines.append(f"Our Implementation Class UID:      {info.implementation_class_uid}")
        if info.implementation_version_name:
            lines.append(f"Our Implementation Version Name:   {info.implementation_version_name}")
        lines += [
            f"Application Context Name:    {_printable(ac.application_context)}",
            "Responding Application Name: resp. AE Title",
            f"Our Max PDU Receive Size:    {info.maximum_length}",
        ]
    else:
        lines += [
            f"Their Implementation Class UID:    {_printable(info.implementation_class_uid or 'unknown')}",
            f"Their Implementation Version Name: {_printable(info.implementation_version_name or 'unknown')}",
            f"Application Context Name:    {_printable(ac.application_context)}",
            f"Calling Application Name:    {_printable(ac.calling_ae_title)}",
            f"Called Application Name:     {_printable(ac.called_ae_title)}",
            f"Their Max PDU Receive Size:  {info.maximum_length}",
        ]
    lines.append("Presentation Contexts:" if ac.presentation_contexts else "Presentation Contexts: None")
    roles = _roles(info)
    for pc in sorted(ac.presentation_contexts, key=lambda pc: pc.context_id):
        abstract_syntax = abstract_syntaxes.get(pc.context_id, "")
        lines += [
            f"  Context ID:        {pc.context_id} ({_CONTEXT_RESULTS.get(pc.result, '(no value available)')})",
            f"    Abstract Syntax: ={_uid_name(abstract_syntax) if abstract_syntax else '(unknown)'}",
        ]
        if pc.result == 0:
            lines += [
                f"    Accepted SCP/SCU Role: {roles.get(abstract_syntax, 'Default')}",
                f"    Accepted Transfer Syntax: ={_uid_name(pc.transfer_syntax)}",
            ]
    lines += _extended_lines(info, "Accepted")
    lines += _window_lines(info, "Accepted")
    lines.append(f"User Identity Negotiation Response: {'Yes' if info.user_identity is not None else 'None'}")
    lines.append(_banner("END A-ASSOCIATE-AC PDU"))
    _emit(log, lines)


def log_associate_rj(log: logging.Logger, rj: AAssociateRJ, outgoing: bool) -> None:
    """"Reject Parameters:" and the A-ASSOCIATE-RJ summary, at DEBUG."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    result, source, reason = rejection_words(rj.result, rj.source, rj.reason)
    _emit(log, [
        "Reject Parameters:",
        _banner(f"{'OUTGOING' if outgoing else 'INCOMING'} A-ASSOCIATE-RJ PDU"),
        f"Result:    {result}",
        f"Source:    {source}",
        f"Reason:    {reason}",
        _banner("END A-ASSOCIATE-RJ PDU"),
    ])  # fmt: skip


def rejection_words(result: int, source: int, reason: int) -> tuple[str, str, str]:
    """The Result, Source and Reason of an A-ASSOCIATE-RJ in words, as pynetdicom says them."""
    unknown = "(no value available)"
    return (
        _RESULTS.get(result, unknown),
        _SOURCES.get(source, unknown),
        _REASONS.get(source, {}).get(reason, "Reserved" if source in _REASONS else unknown),
    )


def log_abort(log: logging.Logger, source: int, reason: int, outgoing: bool) -> None:
    """"Abort Parameters:" and the A-ABORT summary, at DEBUG."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    _emit(log, [
        "Abort Parameters:",
        _banner(f"{'OUTGOING' if outgoing else 'INCOMING'} A-ABORT PDU"),
        f"Abort Source: {_ABORT_SOURCES.get(source, '(no value available)')}",
        f"Abort Reason: {_ABORT_REASONS.get(reason, '(no value available)') if source == 2 else '(no value available)'}",
        _banner("END A-ABORT PDU"),
    ])  # fmt: skip


# -- DIMSE messages ------------------------------------------------------------------


def log_message(command: object, context_id: int, outgoing: bool) -> None:
    """The lines pynetdicom prints for a DIMSE message sent or received (none for a sent response)."""
    log = EXCHANGE_LOG
    if not log.isEnabledFor(logging.INFO):
        return
    kind = type(command)
    if kind is dimse.CStoreRQ:
        _store_request(log, command, context_id, outgoing)
    elif kind is dimse.CStoreRSP and not outgoing:
        _store_response(log, command, context_id)
    elif kind is dimse.CEchoRQ:
        _echo_request(log, command, context_id, outgoing)
    elif kind is dimse.CEchoRSP and not outgoing:
        log.info("Received Echo Response (Status: %s)", status_text(command.status, "echo"))


def _echo_request(log: logging.Logger, command: dimse.CEchoRQ, context_id: int, outgoing: bool) -> None:
    if outgoing:
        log.info("Sending Echo Request: MsgID %s", command.message_id)
        return
    log.info("Received Echo Request (MsgID %s)", command.message_id)
    if log.isEnabledFor(logging.DEBUG):
        _emit(log, [
            _banner("INCOMING DIMSE MESSAGE"),
            "Message Type                  : C-ECHO RQ",
            f"Presentation Context ID       : {context_id}",
            f"Message ID                    : {command.message_id}",
            "Data Set                      : None",
            _banner("END DIMSE MESSAGE"),
        ])  # fmt: skip


def _store_request(log: logging.Logger, command: dimse.CStoreRQ, context_id: int, outgoing: bool) -> None:
    if outgoing:
        name = _uid_name(command.affected_sop_class_uid)
        modality = {"CT Image Storage": ", (CT)", "MR Image Storage": ", (MR)"}.get(name, "")
        log.info("Sending Store Request: MsgID %s%s", command.message_id, modality)
    else:
        log.info("Received Store Request")
    if not log.isEnabledFor(logging.DEBUG):
        return
    lines = [_banner(f"{'OUTGOING' if outgoing else 'INCOMING'} DIMSE MESSAGE"), "Message Type                  : C-STORE RQ"]
    if not outgoing:
        lines.append(f"Presentation Context ID       : {context_id}")
    lines += [
        f"Message ID                    : {command.message_id}",
        f"Affected SOP Class UID        : {_uid_name(command.affected_sop_class_uid)}",
        f"Affected SOP Instance UID     : {_printable(command.affected_sop_instance_uid)}",
    ]
    if not outgoing and command.move_originator_aet is not None:
        lines.append(f"Move Originator               : {_printable(command.move_originator_aet)}")
    lines += [
        "Data Set                      : Present",
        f"Priority                      : {_PRIORITIES.get(command.priority, command.priority)}",
        _banner("END DIMSE MESSAGE"),
    ]
    _emit(log, lines)


def _store_response(log: logging.Logger, command: dimse.CStoreRSP, context_id: int) -> None:
    status = status_text(command.status)
    log.info("Received Store Response (Status: %s)", status)
    if not log.isEnabledFor(logging.DEBUG):
        return
    lines = [
        _banner("INCOMING DIMSE MESSAGE"),
        "Message Type                  : C-STORE RSP",
        f"Presentation Context ID       : {context_id}",
        f"Message ID Being Responded To : {command.message_id_being_responded_to}",
    ]
    if command.affected_sop_class_uid:
        lines.append(f"Affected SOP Class UID        : {_uid_name(command.affected_sop_class_uid)}")
    if command.affected_sop_instance_uid:
        lines.append(f"Affected SOP Instance UID     : {_printable(command.affected_sop_instance_uid)}")
    lines += [f"Status                        : {status}", _banner("END DIMSE MESSAGE")]
    _emit(log, lines)
