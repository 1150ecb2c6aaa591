"""DCMTK ``storescu``/``echoscu`` flags on hsscp's SCU commands: honoured, or refused saying why.

hsscp's storescu proposes one context per (SOP class, transfer syntax) of
the files, each file's own syntax first, and sends each file's bytes as they
are, converting only between explicit and implicit VR little endian when the
peer accepts nothing else. DCMTK flags that ask for that, or for what hsscp
always does (``+sd``, ``+r``, ``-R``), are accepted; ``-xi`` (implicit VR
only) is honoured; the other proposal flags are refused, since hsscp cannot
re-encode into them.
"""

from __future__ import annotations

import argparse
import logging

from hsscp.cli_parser import FlagTable, add_honoured, add_refused

__all__ = ["LOG_LEVELS", "add_network_flags", "add_storescu_flags"]

# DCMTK's -ll levels as logging levels.
LOG_LEVELS = {
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}

_OWN_SYNTAX = ("hsscp storescu proposes each file's own transfer syntax and sends its bytes as they "
               "are (converting only between explicit and implicit VR little endian): leave the flag "
               "out, or use -xi to send implicit VR little endian only")
_PROPOSALS = ["-x=", "-xe", "-xb", "-xs", "-xy", "-xx", "-xv", "-xw", "-xt", "-xu", "-xm", "-xh",
              "-xn", "-xl", "-x2", "-x3", "-xo", "-x4", "-x5", "-xr", "-xd"]


def _log_level(text: str) -> int:
    try:
        return LOG_LEVELS[text]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level (one of {', '.join(LOG_LEVELS)})") from None


def add_network_flags(g: argparse._ArgumentGroup) -> None:
    """DCMTK's logging flag, common to storescu and echoscu."""
    g.add_argument("-ll", "--log-level", dest="log_level", type=_log_level, metavar="LEVEL",
                   help=f"log at this level: {', '.join(LOG_LEVELS)} (wins over -q/-v/-d)")


_HONOURED: FlagTable = [
    (("+sd", "--scan-directories"), 0, "folders are always scanned"),
    (("+r", "--recurse"), 0, "folders are always scanned recursively"),
    (("-R", "--required"), 0, "propose only the contexts the files need (always)"),
    (("+f", "--read-file", "+fo", "--read-file-only"), 0,
     "send DICOM Part 10 files; other files are skipped (always)"),
]

_REFUSED: FlagTable = [
    *(((flag,), 0, _OWN_SYNTAX) for flag in _PROPOSALS),
    (("+C", "--combine"), 0, "hsscp proposes a context per transfer syntax, so each file can go as it is"),
    (("-r", "--no-recurse"), 0, "hsscp storescu always scans folders recursively: name the files instead"),
    (("-f", "--read-dataset"), 0, "hsscp storescu sends DICOM Part 10 files, with their File Meta Information"),
    (("+rn", "--rename"), 0, "hsscp storescu never renames the files it sends"),
    (("-xf", "--config-file"), 2,
     "hsscp storescu proposes the contexts its files need; it reads no association profile"),
]


def add_storescu_flags(p: argparse.ArgumentParser) -> None:
    """DCMTK storescu's input and proposal flags on hsscp's storescu."""
    g = p.add_argument_group("DCMTK storescu flags", "accepted where hsscp does the same")
    add_honoured(g, _HONOURED)
    g.add_argument("-xi", "--propose-implicit", dest="propose_implicit", action="store_true",
                   help="propose implicit VR little endian only; explicit VR little endian files are "
                        "converted, others fail with no accepted presentation context")
    add_refused(p, _REFUSED)
