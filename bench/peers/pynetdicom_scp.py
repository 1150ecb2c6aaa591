"""A pynetdicom Storage SCP, run as a benchmark and interop *peer* in its own process.

    python bench/peers/pynetdicom_scp.py PORT [-od DIR] [--ignore] [--max-pdu N] [--status 0xA700]

Accepts Verification and every storage SOP class in every transfer syntax
on 127.0.0.1 and writes each received instance as ``event.encoded_dataset()``
(the data set bytes as received behind a File Meta group) to ``DIR/<SOP
Instance UID>.dcm``. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("-od", "--output-directory", default=".")
    parser.add_argument("--ignore", action="store_true", help="answer Success, write nothing")
    parser.add_argument("--max-pdu", type=int, default=16382)
    parser.add_argument("--status", type=lambda s: int(s, 0), default=0x0000, help="status to answer C-STOREs with")
    parser.add_argument("-aet", "--ae-title", default="PYNETDICOM")
    args = parser.parse_args(argv)
    os.makedirs(args.output_directory, exist_ok=True)

    def on_store(event) -> int:
        if not args.ignore:
            path = os.path.join(args.output_directory, f"{event.request.AffectedSOPInstanceUID}.dcm")
            with open(path, "wb") as out:
                out.write(event.encoded_dataset())
        return args.status

    ae = AE(ae_title=args.ae_title)
    ae.maximum_pdu_size = args.max_pdu
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    signal.signal(signal.SIGTERM, _interrupt)  # pynetdicom shuts its server down on KeyboardInterrupt
    ae.start_server(("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    return 0


def _interrupt(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second signal would break the shutdown
    raise KeyboardInterrupt

if __name__ == "__main__":
    sys.exit(main())
