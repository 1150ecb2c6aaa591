"""The ``hsscp`` command: ``hsscp storescp|storescu|echoscu|bench ...``.

``storescp`` maps its flags onto :class:`hsscp.config.ServerConfig`, taking the
spellings DCMTK and pynetdicom users know (``-aet``, ``-od``, ``-pdu``, ``-ta``,
``-td``, ``-tn``/``-to``/``-ts``, ``-q``/``-v``/``-d``/``-ll``, ``--ignore``, and
DCMTK's ``+`` flags: :mod:`hsscp.cli_dcmtk`). The SCU and benchmark subcommands
come from :mod:`hsscp.loadgen.cli` when it is installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hsscp import __version__
from hsscp.cli_dcmtk import add_storescp_flags, unsupported_settings
from hsscp.cli_parser import PREFIX_CHARS, CommandParser, deferred
from hsscp.config import (
    DUPLICATE_POLICIES,
    FSYNC_POLICIES,
    LAYOUTS,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    ServerConfig,
    build_config,
    load_config_file,
    parse_size,
    ssl_context,
)

__all__ = ["build_parser", "configure_logging", "main", "parse_storescp"]

PROG = "hsscp"
LOADGEN_CLI = "hsscp.loadgen.cli"

# Options of the storescp parser that are not ServerConfig fields.
_NOT_SETTINGS = {"command", "func", "config", "print_config"}

# DCMTK's -ll levels, in hsscp's terms (its "info" is hsscp's default, as ours).
_DCMTK_LOG_LEVELS = {"fatal": "quiet", "error": "quiet", "warn": "quiet", "trace": "debug"}

_LOGGING_LEVELS = {
    "quiet": logging.WARNING,
    "info": logging.INFO,
    # Same threshold as info: the server reads config.log_level to add its per-association lines.
    "verbose": logging.INFO,
    "debug": logging.DEBUG,
}


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _log_level(text: str) -> str:
    level = _DCMTK_LOG_LEVELS.get(text, text)
    if level not in LOG_LEVELS:
        names = ", ".join([*LOG_LEVELS, *_DCMTK_LOG_LEVELS])
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level (one of {names})")
    return level


def _port(text: str) -> int:
    return int(text)


_port.__name__ = "int"  # so a bad PORT reads "invalid int value", as argparse says it


def _add_storescp(subparsers: Any) -> argparse.ArgumentParser:
    # Every option defaults to SUPPRESS: a flag not given leaves no attribute, so it
    # cannot override the configuration file with a default.
    p = subparsers.add_parser(
        "storescp",
        help="run the storage SCP",
        description="Receive DICOM instances (C-STORE) and C-ECHO; write them as Part 10 files.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
        prefix_chars=PREFIX_CHARS,
    )
    p.set_defaults(func=_run_storescp)
    # None, not SUPPRESS: argparse (3.11) would run int() on the SUPPRESS marker when PORT is absent.
    p.add_argument("port", type=deferred(_port, "PORT"), nargs="?", default=None, metavar="PORT",
                   help="TCP port to listen on (default 11112)")

    g = p.add_argument_group("configuration file")
    g.add_argument("--config", metavar="FILE", help="TOML file of settings; flags override it")
    g.add_argument("--print-config", action="store_true",
                   help="print the merged settings as TOML and exit")

    g = p.add_argument_group("logging")
    g.add_argument("-q", "--quiet", dest="log_level", action="store_const", const="quiet",
                   help="warnings and errors only")
    g.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="verbose",
                   help="also a line per association")
    g.add_argument("-d", "--debug", dest="log_level", action="store_const", const="debug",
                   help="debug output")
    g.add_argument("-ll", "--log-level", dest="log_level", type=_log_level, metavar="LEVEL",
                   help="one of the above by name (default info), or DCMTK's fatal, error, warn, trace")

    g = p.add_argument_group("network")
    g.add_argument("-aet", "--aetitle", "--ae-title", dest="ae_title", metavar="AET",
                   help="our AE title (default HSSCP)")
    g.add_argument("--bind", "-ba", "--bind-address", dest="bind", metavar="ADDR",
                   help="address to listen on (default: all interfaces)")
    g.add_argument("--max-pdu", "-pdu", dest="max_pdu", type=_size, metavar="BYTES",
                   help="maximum PDU we receive, 4096 or more, 0 = unlimited (default 1M)")
    g.add_argument("-ta", "--acse-timeout", dest="acse_timeout", type=float, metavar="SECONDS",
                   help="timeout for association messages (default 30)")
    g.add_argument("-td", "--dimse-timeout", dest="dimse_timeout", type=float, metavar="SECONDS",
                   help="timeout for DIMSE messages (default 30)")
    g.add_argument("-tn", "--network-timeout", "-to", "-ts", "--socket-timeout", dest="network_timeout",
                   type=float, metavar="SECONDS", help="idle timeout of a connection (default 60)")
    g.add_argument("--max-associations", dest="max_associations", type=int, metavar="N",
                   help="associations at once, over all workers (default 64)")
    g.add_argument("--require-calling-aet", dest="require_calling_aet", action="append",
                   metavar="AET", help="accept only this calling AE title (repeatable)")
    g.add_argument("--require-called-aet", dest="require_called_aet",
                   action=argparse.BooleanOptionalAction,
                   help="refuse associations not addressed to our AE title")

    g = p.add_argument_group("TLS")
    g.add_argument("--tls-cert", dest="tls_cert", metavar="FILE", help="server certificate (PEM)")
    g.add_argument("--tls-key", dest="tls_key", metavar="FILE", help="its private key (PEM)")
    g.add_argument("--tls-ca", dest="tls_ca", metavar="FILE",
                   help="CA certificates; given, clients must present a certificate it signed")

    g = p.add_argument_group("storage")
    g.add_argument("-od", "--output-directory", dest="output_directory", metavar="DIR",
                   help="where files are written (default ./received)")
    g.add_argument("--layout", choices=LAYOUTS, help="study: one folder per study; flat: one folder")
    g.add_argument("--fsync", choices=FSYNC_POLICIES,
                   help="what is fsynced before Success is answered (default file)")
    g.add_argument("--spool-threshold", dest="spool_threshold", type=_size, metavar="BYTES",
                   help="data sets larger than this spill to disk as they arrive (default 4M)")
    g.add_argument("--on-duplicate", dest="on_duplicate", choices=DUPLICATE_POLICIES,
                   help="a SOP instance stored before, with other bytes (default overwrite)")
    g.add_argument("--ignore", action=argparse.BooleanOptionalAction,
                   help="receive and answer Success but write nothing")
    g.add_argument("--inline-limit", dest="inline_limit", type=parse_size, metavar="BYTES",
                   help="with --fsync none, or where an fsync is measured to cost next to nothing "
                        "(a tmpfs), data sets up to this size are written by the worker itself, not "
                        "handed to a writer (default 1M; 0 = always a writer)")
    g.add_argument("--journal", metavar="FILE", help="append a JSON line per answered C-STORE to FILE")
    g.add_argument("--journal-max-bytes", dest="journal_max_bytes", type=_size, metavar="BYTES",
                   help="rotate the journal past this size (default 0: never)")
    g.add_argument("--journal-keep", dest="journal_keep", type=int, metavar="N",
                   help="rotated journal files kept (default 5)")

    g = p.add_argument_group("processes")
    g.add_argument("--workers", type=int, metavar="N",
                   help="association worker processes (default: one per CPU)")
    g.add_argument("--writers", type=int, metavar="N",
                   help="file writer processes (default: one per CPU)")
    g.add_argument("--graceful-timeout", dest="graceful_timeout", type=float, metavar="SECONDS",
                   help="on stop, how long open associations may finish (default 30)")
    g.add_argument("--async-ops", dest="async_ops", type=int, metavar="N",
                   help="outstanding requests granted to a peer that proposes an asynchronous "
                        "operations window (default 16)")
    g.add_argument("--heartbeat-timeout", dest="heartbeat_timeout", type=float, metavar="SECONDS",
                   help="replace a worker whose event loop has been stuck this long (default 10)")

    g = p.add_argument_group("operations")
    g.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus /metrics, /healthz and /readyz there (e.g. 127.0.0.1:9100)")
    g.add_argument("--min-free-space", dest="min_free_space", type=_size, metavar="BYTES",
                   help="below this much free space answer C-STOREs 0xA700 and report not ready (default 0: never)")
    g.add_argument("--proxy-protocol", dest="proxy_protocol", action=argparse.BooleanOptionalAction,
                   help="each connection starts with a PROXY v1/v2 header (HAProxy send-proxy): "
                        "its client address is the peer")
    g.add_argument("--log-format", dest="log_format", choices=LOG_FORMATS,
                   help="text (default) or json: one JSON object a line")

    g = p.add_argument_group("after the file lands (placeholders #p folder, #f file, #a calling AE, "
                             "#c called AE, #r peer; no shell runs)")
    g.add_argument("-xcr", "--exec-on-reception", dest="exec_on_reception", metavar="CMD",
                   help="run CMD after each instance is stored")
    g.add_argument("-xcs", "--exec-on-eostudy", dest="exec_on_eostudy", metavar="CMD",
                   help="run CMD once a study has been quiet for --eostudy-timeout (#p: its folder)")
    g.add_argument("-tos", "--eostudy-timeout", dest="eostudy_timeout", type=float, metavar="SECONDS",
                   help="quiet seconds that complete a study (default 60)")
    g.add_argument("--exec-on-eoseries", dest="exec_on_eoseries", metavar="CMD",
                   help="run CMD once a series has been quiet for --eoseries-timeout (#p: its folder)")
    g.add_argument("--eoseries-timeout", dest="eoseries_timeout", type=float, metavar="SECONDS",
                   help="quiet seconds that complete a series (default 60)")
    g.add_argument("--hook-timeout", dest="hook_timeout", type=float, metavar="SECONDS",
                   help="kill a hook still running after this long (default 300)")
    g.add_argument("--hook-concurrency", dest="hook_concurrency", type=int, metavar="N",
                   help="hooks running at once; more wait in a queue (default 4)")
    add_storescp_flags(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``hsscp`` parser with its subcommands (the load generator's when installed)."""
    parser = argparse.ArgumentParser(prog=PROG, description="High-throughput DICOM storage SCP and SCU.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )
    _add_storescp(subparsers)
    if _loadgen_available():
        importlib.import_module(LOADGEN_CLI).register(subparsers)
    return parser


def _loadgen_available() -> bool:
    # The load generator is optional: the server works without it. find_spec of a
    # submodule raises, rather than answering None, when its package is missing.
    try:
        return importlib.util.find_spec(LOADGEN_CLI) is not None
    except ModuleNotFoundError:
        return False


def _merged_config(args: argparse.Namespace) -> ServerConfig:
    settings = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS and v is not None}
    path = getattr(args, "config", None)
    file_values = load_config_file(path) if path is not None else {}
    return build_config(file_values, settings, source=path)


def _config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The configuration to start with; refuses settings the server cannot honour yet."""
    config = _merged_config(args)
    problems = unsupported_settings(config)
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def parse_storescp(argv: Sequence[str]) -> ServerConfig:
    """The configuration ``hsscp storescp ARGV`` would hold (file and flags merged).

    Raises ConfigError for bad settings; argparse exits on malformed flags. Settings
    the server would refuse at start (:func:`hsscp.cli_dcmtk.unsupported_settings`)
    are returned as they are.
    """
    return _merged_config(build_parser().parse_args(["storescp", *argv]))


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send the ``hsscp`` logger to stderr at one of LOG_LEVELS, as text or JSON lines."""
    logger = logging.getLogger("hsscp")
    # Replace our stream handler on a second call instead of doubling every line.
    logger.handlers = [h for h in logger.handlers if not getattr(h, "_hsscp_cli", False)]
    handler = logging.StreamHandler(sys.stderr)
    handler._hsscp_cli = True  # type: ignore[attr-defined]
    if log_format == "json":
        from hsscp.log_format import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s")
        )
    logger.addHandler(handler)
    logger.setLevel(_LOGGING_LEVELS[level])
    # pynetdicom's lines per association and per message (DCMTK's -v) only from "verbose" on.
    logging.getLogger("hsscp.exchange").setLevel(logging.WARNING if level in ("quiet", "info") else logging.NOTSET)
    # A line per association (at the level set above), one per C-STORE from -v on; failures
    # are WARNINGs, shown at every level.
    from hsscp.association_log import show_info_lines

    show_info_lines(association=True, store=level in ("verbose", "debug"))


def _run_storescp(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    if getattr(args, "print_config", False):
        sys.stdout.write(config.to_toml())
        return 0
    try:
        # Checked here so a bad certificate path is a configuration error, not a crash at fork.
        ssl_context(config)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate, key or CA: {exc}") from None
    configure_logging(config.log_level, config.log_format)
    from workers.scp import serve  # imported late: it pulls in the whole server

    result = serve(config)
    if result.summary:  # a server that did not start has said why in the log already
        print(result.summary, flush=True)
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hsscp`` command; returns the process exit code (2 for usage and settings errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
