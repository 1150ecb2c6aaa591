"""``hsscp storescu``, ``hsscp echoscu`` and ``hsscp bench``: the load generator's commands.

:func:`register` adds them to the ``hsscp`` parser; each sets ``func`` to a
function of the parsed arguments returning the exit status (:data:`EXIT_STATUS`).
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hsscp import __version__
from hsscp.aet import normalize_ae_title
from hsscp.cli_parser import PREFIX_CHARS, CommandParser, deferred
from hsscp.errors import HsscpError
from hsscp.loadgen.dcmtk_flags import add_network_flags, add_storescu_flags
from hsscp.loadgen.driver import Peer

log = logging.getLogger("hsscp.loadgen")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WARNINGS, EXIT_SKIPPED = 0, 1, 2, 3, 4

_EXIT_LINES = """\
exit status:
  0  every operation succeeded (status 0x0000) and every association was released
  1  something failed or was not sent: a failure status, a file with no accepted
     presentation context, an association rejected, aborted or lost, a refused
     connection, a timeout
  2  bad usage, or files that cannot be sent as asked
  3  every operation succeeded, some with a warning status (0xB000 range)"""
ECHO_EXIT_STATUS = _EXIT_LINES
EXIT_STATUS = _EXIT_LINES + """
  4  everything sent was stored, but some of the files named were skipped
     (not DICOM Part 10 files, unreadable)
The report names each file that failed or was skipped; --json has them all."""


class UsageError(HsscpError):
    """Bad flags or files: exit 2 with the message."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    return int(text)


_port.__name__ = "int"  # a bad PORT reads "invalid int value", as argparse says it


def _add_network(p: argparse.ArgumentParser, calling: str) -> None:
    p.add_argument("addr", metavar="ADDR", help="hostname or IP address of the peer")
    # Converted once the line is parsed: an unknown flag's value must not be reported as the PORT.
    p.add_argument("port", metavar="PORT", type=deferred(_port, "PORT"), help="TCP port of the peer")
    g = p.add_argument_group("logging")
    g.add_argument("-q", "--quiet", action="store_true", help="errors only, no report")
    g.add_argument("-v", "--verbose", action="store_true", help="association events")
    g.add_argument("-d", "--debug", action="store_true", help="debug output")
    add_network_flags(g)
    g = p.add_argument_group("network")
    g.add_argument("-aet", "--calling-aet", "--aetitle", dest="calling_aet", default=calling, metavar="AET",
                   help=f"our AE title (default {calling})")
    g.add_argument("-aec", "--called-aet", "--call", dest="called_aet", default="ANY-SCP", metavar="AET",
                   help="the peer's AE title (default ANY-SCP)")
    g.add_argument("-pdu", "--max-pdu", type=int, default=16384, metavar="BYTES",
                   help="maximum PDU we receive, 0 = unlimited (default 16384)")
    g.add_argument("-to", "--timeout", type=float, metavar="SECONDS", help="TCP connect timeout (default none)")
    g.add_argument("-ta", "--acse-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="timeout for association messages (default 30)")
    g.add_argument("-td", "--dimse-timeout", type=float, metavar="SECONDS",
                   help="timeout for each response (default none)")
    g.add_argument("-tn", "--network-timeout", type=float, metavar="SECONDS",
                   help="abort when nothing arrives for this long while waiting (default none)")
    g = p.add_argument_group("load")
    g.add_argument("-c", "--associations", type=_positive_int, default=1, metavar="K",
                   help="associations at once, sharing one work queue (default 1)")
    g.add_argument("--processes", type=_positive_int, default=1, metavar="P",
                   help="spread the K associations over P processes, one event loop each (default 1)")
    g.add_argument("--repeat", type=_positive_int, default=1, metavar="N", help="do everything N times (default 1)")
    g.add_argument("--duration", type=float, metavar="SECONDS", help="keep going for this long instead of --repeat")
    g.add_argument("--json", metavar="FILE", help="write the report as JSON")
    g = p.add_argument_group("TLS")
    g.add_argument("--tls", action="store_true", help="use TLS without checking the peer's certificate")
    g.add_argument("--tls-ca", metavar="FILE", help="use TLS; the peer's certificate must be signed by these CAs")
    g.add_argument("--tls-cert", metavar="FILE", help="our certificate (PEM), for peers that ask for one")
    g.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")


def register(subparsers: Any) -> None:
    """Add ``storescu``, ``echoscu`` and ``bench`` to the ``hsscp`` command."""
    p = subparsers.add_parser(
        "storescu", help="send DICOM files (C-STORE), as a load generator",
        description="Send files and folders (recursively) as C-STOREs, streaming each file's data set "
        "as it is. Latency is measured from a request's first PDU handed to the transport to its "
        "response decoded.",
        epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter, prefix_chars=PREFIX_CHARS,
    )
    p.set_defaults(func=run_storescu)
    _add_network(p, "STORESCU")
    add_storescu_flags(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    g = p.add_argument_group("storage load")
    g.add_argument("--async-ops", type=_positive_int, metavar="N",
                   help="propose an asynchronous operations window of N and keep up to the "
                   "negotiated number of C-STOREs outstanding per association")
    g.add_argument("--new-uids", choices=("instance", "series", "study"),
                   help="give each copy sent new UIDs: SOP Instance; and Series; and Study")
    g.add_argument("--rate", type=float, metavar="R", help="send at most R instances per second in all")
    g.add_argument("--preload", action="store_true", help="read every file into memory first")
    g.add_argument("--plot", metavar="FILE.png",
                   help="draw throughput over time and the latency histogram (needs matplotlib)")

    p = subparsers.add_parser("echoscu", help="C-ECHO round trips, as a load generator",
                              description="Measure C-ECHO round trips over K associations.",
                              epilog=ECHO_EXIT_STATUS,
                              formatter_class=argparse.RawDescriptionHelpFormatter, prefix_chars=PREFIX_CHARS)
    p.set_defaults(func=run_echoscu)
    _add_network(p, "ECHOSCU")

    from hsscp.loadgen import bench

    bench.register(subparsers)


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    if args.quiet:
        level = logging.ERROR
    if getattr(args, "log_level", None) is not None:
        level = args.log_level
    logger = logging.getLogger("hsscp")
    # One handler of ours, to the stderr of now: a second run in the same process replaces it.
    logger.handlers = [h for h in logger.handlers if not getattr(h, "_loadgen", False)]
    handler = logging.StreamHandler(sys.stderr)
    handler._loadgen = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname).1s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # DICOM peers are addressed by IP more often than by name
    if args.tls_ca:
        context.load_verify_locations(args.tls_ca)
    else:
        context.verify_mode = ssl.CERT_NONE
    if args.tls_cert:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


def _check_ae_titles(args: argparse.Namespace) -> None:
    for flag, title in (("-aet/--calling-aet", args.calling_aet), ("-aec/--called-aet", args.called_aet)):
        try:
            normalize_ae_title(title)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None


def _peer(args: argparse.Namespace, async_ops: int = 0) -> Peer:
    _check_ae_titles(args)
    if args.processes > args.associations:
        raise UsageError(f"--processes {args.processes} needs at least as many associations (-c)")
    if args.max_pdu and args.max_pdu < 4096:
        raise UsageError(f"--max-pdu must be 0 or at least 4096, not {args.max_pdu}")
    try:
        tls = tls_context(args)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS files: {exc}") from None
    return Peer(
        host=args.addr, port=args.port, calling_ae_title=args.calling_aet, called_ae_title=args.called_aet,
        max_pdu=args.max_pdu, connect_timeout=args.timeout, acse_timeout=args.acse_timeout,
        dimse_timeout=args.dimse_timeout, network_timeout=args.network_timeout, async_ops=async_ops, tls=tls,
    )


def _parameters(args: argparse.Namespace, started: datetime, instances: int = 0):
    from hsscp.loadgen.report import RunParameters

    return RunParameters(
        target=f"{args.addr}:{args.port}", called_ae_title=args.called_aet, calling_ae_title=args.calling_aet,
        associations=args.associations, processes=args.processes, async_ops=getattr(args, "async_ops", None),
        rate=getattr(args, "rate", None), repeat=None if args.duration else args.repeat, duration=args.duration,
        files=list(getattr(args, "paths", [])), instances=instances, new_uids=getattr(args, "new_uids", None),
        hsscp_version=__version__, started=started.isoformat(timespec="seconds"),
    )


def exit_status(report) -> int:
    """The exit status a report calls for (see :data:`EXIT_STATUS`)."""
    if report.failed or report.not_sent or report.troubled_associations:
        return EXIT_FAILED
    if report.skipped_files:
        return EXIT_SKIPPED
    return EXIT_WARNINGS if report.warnings else EXIT_OK


def _finish(args: argparse.Namespace, report, raw, plot: str | None = None) -> int:
    from hsscp.loadgen.report import format_report, write_json

    if not args.quiet:
        print(format_report(report), flush=True)
    if args.json:
        write_json(report, args.json)
    if plot:
        from hsscp.loadgen.plot import plot_run

        plot_run(report, raw, plot)
    return exit_status(report)


def _progress(args: argparse.Namespace, noun: str, total: int | None):
    from hsscp.loadgen.progress import ProgressLine

    return ProgressLine(noun, total, enabled=None if not args.quiet else False)


def _crashed(raw, crashed: int) -> None:
    if crashed:
        raw.events["process ended without a result"] = crashed


def run_storescu(args: argparse.Namespace) -> int:
    try:
        return _storescu(args)
    except UsageError as exc:
        print(f"hsscp storescu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _storescu(args: argparse.Namespace) -> int:
    from hsscp.loadgen import files, processes, uidpatch
    from hsscp.loadgen.payload import Payloads
    from hsscp.loadgen.report import summarize
    from hsscp.loadgen.store import Share, StoreJob, run_share

    _configure_logging(args)
    if args.plot:
        from hsscp.loadgen.plot import require_matplotlib

        require_matplotlib(UsageError)
    peer = _peer(args, args.async_ops or 0)
    started = datetime.now().astimezone()
    try:
        scan = files.scan(args.paths)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    for path, why in scan.skipped:
        log.warning("skipped %s: %s", path, why)
    if not scan.instances:
        raise UsageError("no DICOM Part 10 files to send")
    try:
        only = [files.IMPLICIT_VR_LE] if args.propose_implicit else None
        contexts = files.plan_contexts(scan.instances, only)
        maker = uidpatch.UidMaker(args.new_uids) if args.new_uids else None
        payloads = Payloads(scan.instances, args.preload, maker)
        payloads.prepare()
    except (ValueError, OSError) as exc:  # PayloadError is a ValueError
        raise UsageError(str(exc)) from None
    if args.rate is not None and args.rate <= 0:
        raise UsageError("--rate must be positive")
    job = StoreJob(
        peer, scan.instances, payloads, contexts, args.associations,
        repeat=args.repeat, duration=args.duration, rate=args.rate,
    )
    planned = None if args.duration else len(scan.instances) * args.repeat
    progress = _progress(args, "instances", planned)

    async def share_runner(index: int, count: int, stats, on_progress) -> int:
        return await run_share(job, Share(index, count, stats.epoch), stats, on_progress)

    try:
        raw, not_sent, crashed = processes.run(share_runner, args.processes, progress)
    finally:
        progress.close()
    _crashed(raw, crashed)
    report = summarize(raw, "C-STORE", planned, not_sent, args.processes,
                       _parameters(args, started, len(scan.instances)), dict(scan.skipped))
    return _finish(args, report, raw, args.plot)


def run_echoscu(args: argparse.Namespace) -> int:
    try:
        return _echoscu(args)
    except UsageError as exc:
        print(f"hsscp echoscu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _echoscu(args: argparse.Namespace) -> int:
    from hsscp.loadgen import processes
    from hsscp.loadgen.echo import run_echo_share
    from hsscp.loadgen.report import summarize

    _configure_logging(args)
    peer = _peer(args)
    started = datetime.now().astimezone()
    planned = None if args.duration else args.repeat
    progress = _progress(args, "echoes", planned)

    async def share_runner(index: int, count: int, stats, on_progress) -> int:
        deadline = time.monotonic() + args.duration if args.duration else None
        repeat = None if args.duration else args.repeat
        return await run_echo_share(peer, args.associations, repeat, deadline, (index, count), stats, on_progress)

    try:
        raw, not_sent, crashed = processes.run(share_runner, args.processes, progress)
    finally:
        progress.close()
    _crashed(raw, crashed)
    report = summarize(raw, "C-ECHO", planned, not_sent, args.processes, _parameters(args, started))
    return _finish(args, report, raw)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hsscp.loadgen storescu|echoscu|bench ...``: the commands without the server's CLI."""
    parser = argparse.ArgumentParser(prog="hsscp")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    register(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)
