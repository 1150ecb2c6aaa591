"""DCMTK ``storescp`` flags on ``hsscp storescp``: the ones hsscp honours, and the others refused.

Three kinds:

* flags for what hsscp always does (``+B``, ``-dhl``, ``+xa`` ...): accepted;
* flags that become a setting (``+uf``: keep every copy; ``+xe`` ... ``+xi``: accepted
  syntaxes in DCMTK's order of preference; ``-pm``: unknown SOP classes; ``-fe``, ``-su``): parsed into :class:`hsscp.config.ServerConfig`, then refused at
  start by :func:`unsupported_settings` for as long as the server cannot do
  what they ask, rather than accepted and ignored;
* flags with no equivalent (``--fork``, ``+te`` ...): a usage error that says
  what to do instead.
"""

from __future__ import annotations

import argparse

from hsscp.cli_parser import FlagTable, add_honoured, add_refused
from hsscp.config import ServerConfig

__all__ = ["PREFERENCE_FLAGS", "add_storescp_flags", "unsupported_settings"]

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
_UNCOMPRESSED = [EXPLICIT_LE, EXPLICIT_BE, IMPLICIT]

# DCMTK storescp's preferred transfer syntax flags: (short, long, preferred syntax); each
# accepts that syntax first, then the uncompressed ones (storescp.cc).
_PREFER_FIRST = [
    ("+xs", "--prefer-lossless", "1.2.840.10008.1.2.4.70"),
    ("+xy", "--prefer-jpeg8", "1.2.840.10008.1.2.4.50"),
    ("+xx", "--prefer-jpeg12", "1.2.840.10008.1.2.4.51"),
    ("+xv", "--prefer-j2k-lossless", "1.2.840.10008.1.2.4.90"),
    ("+xw", "--prefer-j2k-lossy", "1.2.840.10008.1.2.4.91"),
    ("+xt", "--prefer-jls-lossless", "1.2.840.10008.1.2.4.80"),
    ("+xu", "--prefer-jls-lossy", "1.2.840.10008.1.2.4.81"),
    ("+xm", "--prefer-mpeg2", "1.2.840.10008.1.2.4.100"),
    ("+xh", "--prefer-mpeg2-high", "1.2.840.10008.1.2.4.101"),
    ("+xn", "--prefer-mpeg4", "1.2.840.10008.1.2.4.102"),
    ("+xl", "--prefer-mpeg4-bd", "1.2.840.10008.1.2.4.103"),
    ("+x2", "--prefer-mpeg4-2-2d", "1.2.840.10008.1.2.4.104"),
    ("+x3", "--prefer-mpeg4-2-3d", "1.2.840.10008.1.2.4.105"),
    ("+xo", "--prefer-mpeg4-2-st", "1.2.840.10008.1.2.4.106"),
    ("+x4", "--prefer-hevc", "1.2.840.10008.1.2.4.107"),
    ("+x5", "--prefer-hevc10", "1.2.840.10008.1.2.4.108"),
    ("+xr", "--prefer-rle", "1.2.840.10008.1.2.5"),
    ("+xd", "--prefer-deflated", "1.2.840.10008.1.2.1.99"),
]

PREFERENCE_FLAGS: dict[tuple[str, str], list[str]] = {
    ("+x=", "--prefer-uncompr"): _UNCOMPRESSED,  # explicit VR in the local (little endian) order
    ("+xe", "--prefer-little"): _UNCOMPRESSED,
    ("+xb", "--prefer-big"): [EXPLICIT_BE, EXPLICIT_LE, IMPLICIT],
    **{(short, long): [first, *_UNCOMPRESSED] for short, long, first in _PREFER_FIRST},
    ("+xi", "--implicit"): [IMPLICIT],
}
"""The transfer syntaxes each flag accepts, best first (DCMTK storescp's lists)."""

_SEE_WORKERS = "every association already runs in a worker process: see --workers"
_AS_RECEIVED = ("hsscp writes every data set exactly as received (+B); convert files "
                "afterwards if needed, e.g. with DCMTK's dcmconv")
_NO_HOOKS = "hsscp does not rename study folders; an --exec-on-eostudy hook can"
_NO_TEST_MODES = "a DCMTK test mode hsscp has no equivalent for"

_REFUSED: FlagTable = [
    (("--fork",), 0, _SEE_WORKERS),
    (("--single-process",), 0, "hsscp always runs associations in worker processes: --workers 1 runs one"),
    (("-id", "--inetd"), 0, "hsscp listens on its port itself; it cannot be run from inetd"),
    (("-xf", "--config-file"), 2, "hsscp reads its settings from a TOML file: --config FILE"),
    (("-F", "--write-dataset"), 0, "hsscp writes Part 10 files, with their File Meta Information"),
    (("+te", "--write-xfer-little"), 0, _AS_RECEIVED),
    (("+tb", "--write-xfer-big"), 0, _AS_RECEIVED),
    (("+ti", "--write-xfer-implicit"), 0, _AS_RECEIVED),
    (("+td", "--write-xfer-deflated"), 0, _AS_RECEIVED),
    (("-ss", "--sort-conc-studies"), 1, "--layout study (the default) writes one folder per study"),
    (("-sp", "--sort-on-patientname"), 0, "--layout study (the default) writes one folder per study"),
    (("--timenames",), 0, "hsscp names files by SOP Instance UID"),
    (("-rns", "--rename-on-eostudy"), 0, _NO_HOOKS),
    (("+ac", "--access-control"), 0,
     "hsscp has no TCP wrapper support: use --require-calling-aet, --bind or a firewall"),
    (("+tls", "--enable-tls"), 2, "use --tls-key KEY --tls-cert CERT (PEM files)"),
    (("--refuse",), 0, _NO_TEST_MODES),
    (("--reject",), 0, _NO_TEST_MODES),
    (("--sleep-after",), 1, _NO_TEST_MODES),
    (("--sleep-during",), 1, _NO_TEST_MODES),
    (("--abort-after",), 0, _NO_TEST_MODES),
    (("--abort-during",), 0, _NO_TEST_MODES),
]


_HONOURED: FlagTable = [
    (("+B", "--bit-preserving"), 0, "write data sets exactly as received (hsscp always does)"),
    (("-B", "--normal"), 0, "allow format conversions (hsscp never needs to convert)"),
    (("+F", "--write-file"), 0, "write Part 10 files (always)"),
    (("+t=", "--write-xfer-same"), 0, "write in the transfer syntax received (always)"),
    (("-uf", "--default-filenames"), 0, "name files by SOP Instance UID (always)"),
    (("-dhl", "--disable-host-lookup"), 0, "hsscp never looks host names up"),
]


def _prefix(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("PREFIX must not be empty")
    return text


def add_storescp_flags(p: argparse.ArgumentParser) -> None:
    """Add DCMTK storescp's flags to the ``storescp`` parser."""
    g = p.add_argument_group(
        "DCMTK storescp flags",
        "accepted where hsscp does the same. The transfer syntax preferences +x=, +xe, +xb, +xi, "
        "+xd, +xs ... accept those syntaxes only, in DCMTK's order of preference (without one the "
        "requestor's first proposed syntax wins); the settings marked 'not supported yet' are "
        "understood but refused at start; flags such as --fork say what to use instead.",
    )
    add_honoured(g, _HONOURED)
    g.add_argument("+xa", "--accept-all", dest="transfer_syntaxes", action="store_const", const=[],
                   help="accept every transfer syntax hsscp knows, the requestor's first proposed "
                        "one chosen (the default)")
    for (short, long), syntaxes in PREFERENCE_FLAGS.items():
        g.add_argument(short, long, dest="transfer_syntaxes", action="store_const", const=syntaxes,
                       help=argparse.SUPPRESS)
    g.add_argument("-pm", "--promiscuous", dest="promiscuous", action="store_true",
                   help="accept storage SOP classes hsscp does not know")
    g.add_argument("+uf", "--unique-filenames", dest="unique_filenames", action="store_true",
                   help="never replace a file of the same instance: keep each copy (--on-duplicate rename)")
    g.add_argument("-fe", "--filename-extension", dest="filename_extension", metavar="EXT",
                   help="extension of the files written: .dcm (others not supported yet)")
    g.add_argument("-su", "--sort-on-study-uid", dest="sort_on_study_uid", metavar="PREFIX", type=_prefix,
                   help="folders PREFIX_<Study Instance UID> (not supported yet; see --layout)")
    add_refused(p, _REFUSED)


def unsupported_settings(config: ServerConfig) -> list[str]:
    """Why the server cannot run with ``config`` yet: one sentence per setting it cannot honour."""
    problems = []
    if config.filename_extension != ".dcm":
        problems.append(
            f"setting 'filename_extension' (-fe) {config.filename_extension!r} is not supported yet: "
            "files are named <SOP Instance UID>.dcm"
        )
    if config.sort_on_study_uid:
        problems.append(
            "setting 'sort_on_study_uid' (-su) is not supported yet: --layout study (the default) "
            "writes <Study Instance UID>/<Series Instance UID>/ folders"
        )
    return problems
