"""The printed form of an ApplicationEntity (``str(ae)``), laid out like pynetdicom's."""

from __future__ import annotations

from typing import Any


def describe_ae(ae: Any) -> str:
    """A summary of ``ae``'s settings, contexts and associations."""
    lines = ["", f"Application Entity {ae._ae_title_str}", ""]
    for heading, contexts in (
        ("Requested", ae._requested_contexts),
        ("Supported", ae.supported_contexts),
    ):
        lines.append(f"  {heading} Presentation Contexts:")
        if not contexts:
            lines.append("\tNone")
        for context in contexts:
            lines.append(f"\t{_uid_name(context.abstract_syntax)}")
            lines.extend(f"\t\t{_uid_name(syntax)}" for syntax in context.transfer_syntax)
        lines.append("")
    lines += [
        f"  ACSE timeout: {ae.acse_timeout} s",
        f"  DIMSE timeout: {ae.dimse_timeout} s",
        f"  Network timeout: {ae.network_timeout} s",
        "",
    ]
    if ae._require_calling_aet:
        lines.append(f"  Required calling AE title(s): {', '.join(ae._require_calling_aet_str)}")
    lines += [f"  Require called AE title: {ae.require_called_aet}", ""]
    associations = ae.active_associations
    lines.append(f"  Association(s): {len(associations)}/{ae.maximum_associations}")
    lines.extend(f"\tPeer: {_peer(assoc)}" for assoc in associations)
    return "\n".join(lines)

def _uid_name(uid: Any) -> str:
    return getattr(uid, "name", str(uid))


def _peer(assoc: Any) -> str:
    """How a live association is shown in the summary: who, and where."""
    remote = getattr(assoc, "remote", None)
    if isinstance(remote, dict):
        return f"{remote.get('ae_title')} on {remote.get('address')}:{remote.get('port')}"
    return repr(assoc)
