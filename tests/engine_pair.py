"""Two engines wired back to back in memory, for driving whole associations in tests."""

from __future__ import annotations

from hsscp import items, pdu
from hsscp.engine import Engine, Role

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def associate_rq(contexts, max_pdu: int = 16384) -> pdu.AAssociateRQ:
    return pdu.AAssociateRQ(
        called_ae_title="ANY-SCP",
        calling_ae_title="TEST-SCU",
        presentation_contexts=[
            items.PresentationContextRQ(2 * i + 1, abstract, list(syntaxes))
            for i, (abstract, syntaxes) in enumerate(contexts)
        ],
        user_information=items.UserInformation(
            [items.MaximumLength(max_pdu), items.ImplementationClassUID("1.2.3.4")]
        ),
    )


def accept_all(request: pdu.AAssociateRQ, max_pdu: int = 16384) -> pdu.AAssociateAC:
    return pdu.AAssociateAC(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=[
            items.PresentationContextAC(pc.context_id, 0, pc.transfer_syntaxes[0])
            for pc in request.presentation_contexts
        ],
        user_information=items.UserInformation(
            [items.MaximumLength(max_pdu), items.ImplementationClassUID("1.2.3.5")]
        ),
    )


class Pair:
    """A requestor and an acceptor; ``step`` sizes each read like a socket would."""

    def __init__(self, step: int = 65536, sink_factory=None) -> None:
        self.requestor = Engine(Role.REQUESTOR)
        self.acceptor = Engine(Role.ACCEPTOR, sink_factory=sink_factory)
        self.step = step
        self.wire_bytes = 0

    def deliver(self, sender: Engine, receiver: Engine, sent=()) -> list:
        """Carry what a ``send_*`` call returned (``sent``) and anything queued since."""
        data = b"".join(bytes(b) for b in [*sent, *sender.pop_output()])
        self.wire_bytes += len(data)
        indications = []
        for i in range(0, len(data), self.step):
            indications += receiver.receive_data(memoryview(data)[i : i + self.step])
        return indications

    def to_acceptor(self, sent=()) -> list:
        return self.deliver(self.requestor, self.acceptor, sent)

    def to_requestor(self, sent=()) -> list:
        return self.deliver(self.acceptor, self.requestor, sent)

    def associate(self, contexts=((VERIFICATION, (IMPLICIT_LE,)),), max_pdu: int = 16384):
        self.requestor.request_association(associate_rq(contexts, max_pdu))
        self.requestor.connection_made()
        self.acceptor.connection_made()
        (requested,) = self.to_acceptor()
        (accepted,) = self.to_requestor(self.acceptor.accept(accept_all(requested.request, max_pdu)))
        return accepted

    def release(self):
        (requested,) = self.to_acceptor(self.requestor.release())
        (confirmed,) = self.to_requestor(self.acceptor.release_response())
        return requested, confirmed

