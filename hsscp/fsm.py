"""The DICOM Upper Layer state machine of PS3.8 section 9.2, as data.

States, events and actions keep the standard's names (Sta1-Sta13,
Evt1-Evt19, AE-n, DT-n, AR-n, AA-n) so that this table can be checked line
by line against PS3.8 table 9-10. It knows nothing of I/O: the engine
carries the actions out.
"""

from __future__ import annotations

STATES = {
    "Sta1": "Idle",
    "Sta2": "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)",
    "Sta3": "Awaiting local A-ASSOCIATE response primitive",
    "Sta4": "Awaiting transport connection opening to complete",
    "Sta5": "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
    "Sta6": "Association established and ready for data transfer",
    "Sta7": "Awaiting A-RELEASE-RP PDU",
    "Sta8": "Awaiting local A-RELEASE response primitive",
    "Sta9": "Release collision requestor side; awaiting A-RELEASE response primitive",
    "Sta10": "Release collision acceptor side; awaiting A-RELEASE-RP PDU",
    "Sta11": "Release collision requestor side; awaiting A-RELEASE-RP PDU",
    "Sta12": "Release collision acceptor side; awaiting A-RELEASE response primitive",
    "Sta13": "Awaiting Transport Connection Close Indication",
}

EVENTS = {
    "Evt1": "A-ASSOCIATE request (local user)",
    "Evt2": "Transport connect confirmation (local transport service)",
    "Evt3": "A-ASSOCIATE-AC PDU (received on transport connection)",
    "Evt4": "A-ASSOCIATE-RJ PDU (received on transport connection)",
    "Evt5": "Transport connection indication (local transport service)",
    "Evt6": "A-ASSOCIATE-RQ PDU (received on transport connection)",
    "Evt7": "A-ASSOCIATE response primitive (accept)",
    "Evt8": "A-ASSOCIATE response primitive (reject)",
    "Evt9": "P-DATA request primitive",
    "Evt10": "P-DATA-TF PDU (received on transport connection)",
    "Evt11": "A-RELEASE request primitive",
    "Evt12": "A-RELEASE-RQ PDU (received on transport connection)",
    "Evt13": "A-RELEASE-RP PDU (received on transport connection)",
    "Evt14": "A-RELEASE response primitive",
    "Evt15": "A-ABORT request primitive",
    "Evt16": "A-ABORT PDU (received on transport connection)",
    "Evt17": "Transport connection closed indication (local transport service)",
    "Evt18": "ARTIM timer expired (Association reject/release timer)",
    "Evt19": "Unrecognized or invalid PDU received",
}

ACTIONS = {
    "AE-1": "Issue TRANSPORT CONNECT request primitive to local transport service",
    "AE-2": "Send A-ASSOCIATE-RQ PDU",
    "AE-3": "Issue A-ASSOCIATE confirmation (accept) primitive",
    "AE-4": "Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection",
    "AE-5": "Issue Transport connection response primitive; start ARTIM timer",
    "AE-6": "Stop ARTIM timer and if A-ASSOCIATE-RQ acceptable by service-provider: issue "
    "A-ASSOCIATE indication primitive; otherwise issue A-ASSOCIATE-RJ PDU and start ARTIM timer",
    "AE-7": "Send A-ASSOCIATE-AC PDU",
    "AE-8": "Send A-ASSOCIATE-RJ PDU and start ARTIM timer",
    "DT-1": "Send P-DATA-TF PDU",
    "DT-2": "Send P-DATA indication primitive",
    "AR-1": "Send A-RELEASE-RQ PDU",
    "AR-2": "Issue A-RELEASE indication primitive",
    "AR-3": "Issue A-RELEASE confirmation primitive, and close transport connection",
    "AR-4": "Issue A-RELEASE-RP PDU and start ARTIM timer",
    "AR-5": "Stop ARTIM timer",
    "AR-6": "Issue P-DATA indication",
    "AR-7": "Issue P-DATA-TF PDU",
    "AR-8": "Issue A-RELEASE indication (release collision)",
    "AR-9": "Send A-RELEASE-RP PDU",
    "AR-10": "Issue A-RELEASE confirmation primitive",
    "AA-1": "Send A-ABORT PDU (service-user source) and start (or restart if already started) ARTIM timer",
    "AA-2": "Stop ARTIM timer if running. Close transport connection",
    "AA-3": "If (service-user initiated abort): issue A-ABORT indication and close transport "
    "connection; otherwise (service-provider initiated abort): issue A-P-ABORT indication "
    "and close transport connection",
    "AA-4": "Issue an A-P-ABORT indication primitive",
    "AA-5": "Stop ARTIM timer",
    "AA-6": "Ignore PDU",
    "AA-7": "Send A-ABORT PDU",
    "AA-8": "Send A-ABORT PDU (service-provider source), issue an A-P-ABORT indication, and start ARTIM timer",
}

# Where each action leaves the machine. AE-6 and AR-8 decide at run time.
NEXT_STATE = {
    "AE-1": "Sta4", "AE-2": "Sta5", "AE-3": "Sta6", "AE-4": "Sta1", "AE-5": "Sta2",
    "AE-6": ("Sta3", "Sta13"), "AE-7": "Sta6", "AE-8": "Sta13",
    "DT-1": "Sta6", "DT-2": "Sta6",
    "AR-1": "Sta7", "AR-2": "Sta8", "AR-3": "Sta1", "AR-4": "Sta13", "AR-5": "Sta1",
    "AR-6": "Sta7", "AR-7": "Sta8", "AR-8": ("Sta9", "Sta10"), "AR-9": "Sta11",
    "AR-10": "Sta12",
    "AA-1": "Sta13", "AA-2": "Sta1", "AA-3": "Sta1", "AA-4": "Sta1", "AA-5": "Sta1",
    "AA-6": "Sta13", "AA-7": "Sta13", "AA-8": "Sta13",
}  # fmt: skip


def _row(event: str, actions: dict[str, str]) -> dict[tuple[str, str], str]:
    return {(event, state): action for state, action in actions.items()}


def _states(names: str, action: str) -> dict[str, str]:
    return {f"Sta{n}": action for n in names.split()}


# PS3.8 table 9-10. A pair missing from the table is not a valid transition.
TRANSITIONS: dict[tuple[str, str], str] = {
    **_row("Evt1", {"Sta1": "AE-1"}),
    **_row("Evt2", {"Sta4": "AE-2"}),
    **_row("Evt3", {"Sta2": "AA-1", "Sta5": "AE-3", **_states("3 6 7 8 9 10 11 12", "AA-8"), "Sta13": "AA-6"}),
    **_row("Evt4", {"Sta2": "AA-1", "Sta5": "AE-4", **_states("3 6 7 8 9 10 11 12", "AA-8"), "Sta13": "AA-6"}),
    **_row("Evt5", {"Sta1": "AE-5"}),
    **_row("Evt6", {"Sta2": "AE-6", **_states("3 5 6 7 8 9 10 11 12", "AA-8"), "Sta13": "AA-7"}),
    **_row("Evt7", {"Sta3": "AE-7"}),
    **_row("Evt8", {"Sta3": "AE-8"}),
    **_row("Evt9", {"Sta6": "DT-1", "Sta8": "AR-7"}),
    **_row("Evt10", {"Sta2": "AA-1", **_states("3 5 8 9 10 11 12", "AA-8"), "Sta6": "DT-2",
                     "Sta7": "AR-6", "Sta13": "AA-6"}),
    **_row("Evt11", {"Sta6": "AR-1"}),
    **_row("Evt12", {"Sta2": "AA-1", **_states("3 5 8 9 10 11 12", "AA-8"), "Sta6": "AR-2",
                     "Sta7": "AR-8", "Sta13": "AA-6"}),
    **_row("Evt13", {"Sta2": "AA-1", **_states("3 5 6 8 9 12", "AA-8"), "Sta7": "AR-3",
                     "Sta10": "AR-10", "Sta11": "AR-3", "Sta13": "AA-6"}),
    **_row("Evt14", {"Sta8": "AR-4", "Sta9": "AR-9", "Sta12": "AR-4"}),
    **_row("Evt15", {"Sta3": "AA-1", "Sta4": "AA-2", **_states("5 6 7 8 9 10 11 12", "AA-1")}),
    **_row("Evt16", {"Sta2": "AA-2", **_states("3 5 6 7 8 9 10 11 12", "AA-3"), "Sta13": "AA-2"}),
    **_row("Evt17", {"Sta2": "AA-5", **_states("3 4 5 6 7 8 9 10 11 12", "AA-4"), "Sta13": "AR-5"}),
    **_row("Evt18", {"Sta2": "AA-2", "Sta13": "AA-2"}),
    **_row("Evt19", {"Sta2": "AA-1", **_states("3 5 6 7 8 9 10 11 12", "AA-8"), "Sta13": "AA-7"}),
}  # fmt: skip

# Events the local user causes: one that is not in the table for the current
# state is our caller's mistake, not the peer's.
LOCAL_EVENTS = frozenset({"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})


def action_for(event: str, state: str) -> str | None:
    """The action PS3.8 prescribes, or None where the table has no entry."""
    return TRANSITIONS.get((event, state))
