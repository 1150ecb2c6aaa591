"""The storage SCP's configuration: one frozen msgspec Struct, a TOML file, command-line flags.

A configuration file is TOML with the field names of :class:`ServerConfig` as top-level
keys, spelled with underscores exactly as below (``output_directory``, not
``output-directory``); unknown keys are refused. Command-line flags override the file,
and the file overrides the defaults. Relative paths are relative to the working
directory, not to the file::

    port = 11112
    ae_title = "HSSCP"
    output_directory = "/srv/dicom"
    spool_threshold = "4M"          # sizes may be written as integers or with K/M/G
    require_calling_aet = ["CT1", "MR2"]
"""

from __future__ import annotations

import difflib
import math
import os
import re
import ssl
import tomllib
from typing import Any

import msgspec

from hsscp.aet import normalize_ae_title
from hsscp.errors import InvalidInput
from hsscp.hooks import (
    COMPLETION_PLACEHOLDERS,
    RECEPTION_PLACEHOLDERS,
    CommandTemplate,
    HookConfigError,
)

__all__ = [
    "DUPLICATE_POLICIES",
    "FSYNC_POLICIES",
    "HOOK_COMMANDS",
    "LAYOUTS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ConfigError",
    "ProcessSettings",
    "ServerConfig",
    "build_config",
    "dump_toml",
    "load_config_file",
    "parse_host_port",
    "parse_size",
    "ssl_context",
]

LOG_LEVELS = ("quiet", "info", "verbose", "debug")
LOG_FORMATS = ("text", "json")
LAYOUTS = ("study", "flat")
FSYNC_POLICIES = ("none", "file", "file+dir")
DUPLICATE_POLICIES = ("overwrite", "keep", "rename", "reject")

KIB = 1024
MIB = 1024 * KIB
MIN_PDU = 4096
MIN_SPOOL_THRESHOLD = 64 * KIB

# Hook command settings and the placeholders each may use.
HOOK_COMMANDS = {
    "exec_on_reception": RECEPTION_PLACEHOLDERS,
    "exec_on_eostudy": COMPLETION_PLACEHOLDERS,
    "exec_on_eoseries": COMPLETION_PLACEHOLDERS,
}

# Fields that hold byte counts: a file or a flag may write them as "4M", "512K".
SIZE_FIELDS = ("max_pdu", "spool_threshold", "min_free_space", "journal_max_bytes")


class ConfigError(InvalidInput):
    """A configuration the server cannot run with; the message is meant for a person."""


def _cpu_count() -> int:
    return os.cpu_count() or 1


class ProcessSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the multiprocess SCP runs: its processes, its storage, its stop; validated on construction.

    Protocol settings (AE title, timeouts, maximum PDU, association limit, AE title
    checks, contexts) are not here: the AE holds them.
    """

    workers: int = msgspec.field(default_factory=_cpu_count)
    writers: int = msgspec.field(default_factory=_cpu_count)
    output_directory: str = "received"
    layout: str = "study"
    fsync: str = "file"
    spool_threshold: int = 4 * MIB
    graceful_timeout: float = 30.0
    # A worker or writer whose loop has not turned for this long is declared stuck and replaced.
    heartbeat_timeout: float = 10.0
    ignore: bool = False  # receive and answer Success, write nothing
    # Data sets up to this size are written by the association worker itself where that
    # costs less than the hop to a writer: with fsync "none", or where an fsync is measured
    # to cost next to nothing (a tmpfs). CT and MR slices are up to about this size.
    inline_limit: int = 1 * MIB
    # Requests a peer may have outstanding on one association, if it asks (asynchronous
    # operations window); they are stored in parallel and answered as each is stored.
    async_ops: int = 16
    # The settings of DCMTK storescp flags (hsscp.cli_dcmtk); the server refuses to start with
    # any but the defaults until it can honour them.
    # Transfer syntaxes accepted, best first (+xe, +xi...); empty: every one hsscp knows, the
    # requestor's first proposed one chosen.
    transfer_syntaxes: list[str] = []
    promiscuous: bool = False  # accept storage SOP classes hsscp does not know (-pm)
    unique_filenames: bool = False  # never replace the file of an instance received again (+uf)
    filename_extension: str = ".dcm"  # of the files written (-fe)
    sort_on_study_uid: str = ""  # folders <PREFIX>_<Study Instance UID> (-su PREFIX); "": not so
    # What a store of a SOP instance already stored with other bytes does.
    on_duplicate: str = "overwrite"
    # Operations: "HOST:PORT" serves /metrics, /healthz, /readyz ("" = none); below
    # min_free_space free bytes C-STOREs are refused (0xA700, 0 = never); proxy_protocol:
    # every connection starts with a PROXY v1/v2 header (behind HAProxy's send-proxy).
    metrics: str = ""
    min_free_space: int = 0
    proxy_protocol: bool = False
    # A JSON-lines record of every answered C-STORE, as durable as the files ("": no journal);
    # rotated past journal_max_bytes (0: never), keeping journal_keep older files.
    journal: str = ""
    journal_max_bytes: int = 0
    journal_keep: int = 5
    # After the file lands (hsscp.hooks): DCMTK's --exec-on-reception / --exec-on-eostudy,
    # run by the pipeline process ("": none); a study or series completes after this many quiet seconds.
    exec_on_reception: str = ""
    exec_on_eostudy: str = ""
    eostudy_timeout: float = 60.0
    exec_on_eoseries: str = ""
    eoseries_timeout: float = 60.0
    hook_timeout: float = 300.0  # a run still going after this is killed with its process group
    hook_concurrency: int = 4

    def __post_init__(self) -> None:
        if self.metrics:
            parse_host_port(self.metrics)  # its ValueError names the setting
        if self.min_free_space < 0:
            raise ValueError(f"min_free_space must be 0 or more, not {self.min_free_space}")
        _check_hooks(self)
        for name in ("workers", "writers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name, allowed in (("layout", LAYOUTS), ("fsync", FSYNC_POLICIES), ("on_duplicate", DUPLICATE_POLICIES)):
            _check_choice(self, name, allowed)
        # `not >` also refuses NaN.
        if not self.heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be more than 0 seconds, not {self.heartbeat_timeout}")
        # 0 is a legitimate graceful timeout: stop without waiting for associations.
        if not self.graceful_timeout >= 0:
            raise ValueError(f"graceful_timeout must be 0 seconds or more, not {self.graceful_timeout}")
        if not 1 <= self.async_ops <= 65535:
            raise ValueError(f"async_ops must be 1 to 65535, not {self.async_ops}")
        if self.inline_limit < 0:
            raise ValueError(f"inline_limit must be 0 or more, not {self.inline_limit}")
        if self.journal_max_bytes < 0 or self.journal_keep < 1:
            raise ValueError("journal_max_bytes must be 0 or more and journal_keep at least 1")
        if self.spool_threshold < MIN_SPOOL_THRESHOLD:
            raise ValueError(
                f"spool_threshold must be at least {MIN_SPOOL_THRESHOLD} bytes (64K), "
                f"not {self.spool_threshold}"
            )


def _check_hooks(settings: ProcessSettings) -> None:
    """Hook commands are parsed here, at start-up, so a bad one is a configuration error."""
    for name, allowed in HOOK_COMMANDS.items():
        command = getattr(settings, name)
        if command:
            try:
                CommandTemplate.parse(command, allowed)
            except HookConfigError as exc:
                raise ValueError(f"{name} cannot run: {exc}") from None
    for name in ("eostudy_timeout", "eoseries_timeout"):
        if not getattr(settings, name) >= 0:
            raise ValueError(f"{name} must be 0 seconds or more, not {getattr(settings, name)}")
    if not settings.hook_timeout > 0:
        raise ValueError(f"hook_timeout must be more than 0 seconds, not {settings.hook_timeout}")
    if settings.hook_concurrency < 1:
        raise ValueError(f"hook_concurrency must be at least 1, not {settings.hook_concurrency}")


def _check_choice(settings: Any, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(settings, name) not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}, not {getattr(settings, name)!r}")


class ServerConfig(ProcessSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything ``hsscp storescp`` runs with: the process settings, plus the protocol,
    network, TLS and logging settings; validated on construction.

    :meth:`application_entity` and :meth:`process_settings` split it into what the
    multiprocess SCP takes: an AE for the protocol, :class:`ProcessSettings` for the rest.
    """

    port: int = 11112
    bind: str = ""  # "" listens on all interfaces, as DCMTK's storescp
    ae_title: str = "HSSCP"
    max_pdu: int = 1 * MIB  # large PDUs mean fewer headers and wakeups per instance; 0 = unlimited
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 60.0  # inf: no timeout
    log_level: str = "info"
    max_associations: int = 64
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # set: client certificates are required and verified (mutual TLS)
    require_calling_aet: list[str] = []
    require_called_aet: bool = False
    log_format: str = "text"  # "json": one JSON object a line, for log shippers

    def __post_init__(self) -> None:
        _check_choice(self, "log_format", LOG_FORMATS)
        if self.proxy_protocol and self.tls_cert is not None:
            raise ValueError("proxy_protocol cannot be combined with TLS here: terminate TLS at the proxy")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, not {self.port}")
        # Stored normalized (stripped str) so comparisons with titles from the wire are exact.
        try:
            msgspec.structs.force_setattr(self, "ae_title", normalize_ae_title(self.ae_title))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ae_title is not a valid AE title: {exc}") from None
        try:
            titles = [normalize_ae_title(t) for t in self.require_calling_aet]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"require_calling_aet holds an invalid AE title: {exc}") from None
        msgspec.structs.force_setattr(self, "require_calling_aet", titles)
        if self.unique_filenames:
            if self.on_duplicate not in ("overwrite", "rename"):
                raise ValueError(f"unique_filenames (+uf) keeps every copy: it contradicts on_duplicate {self.on_duplicate!r}")
            # DCMTK's +uf never replaces a file: every copy gets a name of its own.
            msgspec.structs.force_setattr(self, "on_duplicate", "rename")
        super().__post_init__()
        if self.max_associations < 1:
            raise ValueError(f"max_associations must be at least 1, not {self.max_associations}")
        if self.max_pdu != 0 and not MIN_PDU <= self.max_pdu < 2**32:
            raise ValueError(
                f"max_pdu must be 0 (unlimited) or {MIN_PDU} to {2**32 - 1}, not {self.max_pdu}"
            )
        _check_choice(self, "log_level", LOG_LEVELS)
        for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, not {getattr(self, name)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("tls_ca (verify client certificates) needs tls_cert and tls_key")

    def process_settings(self) -> ProcessSettings:
        """The settings of the processes, storage and stop, as the multiprocess SCP takes them."""
        return ProcessSettings(**{name: getattr(self, name) for name in ProcessSettings.__struct_fields__})

    def application_entity(self) -> Any:
        """An AE with the protocol settings, supporting Verification and every storage class
        in every transfer syntax. An infinite timeout is None on the AE: no timeout."""
        from hsscp import AE, AllStoragePresentationContexts, VerificationPresentationContexts
        from hsscp.uid import ALL_TRANSFER_SYNTAXES

        ae = AE(self.ae_title)
        ae.acse_timeout = _no_timeout_if_infinite(self.acse_timeout)
        ae.dimse_timeout = _no_timeout_if_infinite(self.dimse_timeout)
        ae.network_timeout = _no_timeout_if_infinite(self.network_timeout)
        ae.maximum_pdu_size = self.max_pdu
        ae.maximum_associations = self.max_associations
        ae.require_called_aet = self.require_called_aet
        ae.require_calling_aet = list(self.require_calling_aet)
        # DCMTK's +x= +xe +xi ...: these syntaxes only, this order preferred over the requestor's.
        syntaxes = list(self.transfer_syntaxes) or ALL_TRANSFER_SYNTAXES
        ae.prefer_requestor_syntax = not self.transfer_syntaxes
        for context in [*VerificationPresentationContexts, *AllStoragePresentationContexts]:
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        if self.promiscuous:
            ae.promiscuous_syntaxes = list(syntaxes)
        return ae

    @property
    def tls(self) -> bool:
        """Whether associations are accepted over TLS."""
        return self.tls_cert is not None

    def to_toml(self) -> str:
        """This configuration as a TOML file that :func:`load_config_file` reads back."""
        return dump_toml(self)


_SIZE = re.compile(r"\s*(\d+)\s*(?:([KMG])(?:I?B)?|B)?\s*", re.IGNORECASE)
_UNITS = {None: 1, "K": KIB, "M": MIB, "G": 1024 * MIB}


def parse_size(text: str) -> int:
    """A byte count written as ``4194304``, ``4M``, ``512K``, ``1G`` or ``4MiB`` (binary units)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size in bytes (like 4194304, 512K, 4M or 1G)")
    unit = match.group(2).upper() if match.group(2) else None
    return int(match.group(1)) * _UNITS[unit]


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6, ``:9100`` for every interface) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics must be HOST:PORT (like 127.0.0.1:9100), not {text!r}")
    return host.strip("[]"), int(port)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML configuration file into a dict of settings (checked by :func:`build_config`)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {os.fspath(path)} is not valid TOML: {exc}") from None


_FIELDS = ServerConfig.__struct_fields__
# A printed configuration starts with what a person looks for first: port, AE title, ...
_TOML_ORDER = (
    *(name for name in _FIELDS if name not in ProcessSettings.__struct_fields__),
    *ProcessSettings.__struct_fields__,
)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>.*)`")
_AT_PATH = re.compile(r"^(?P<what>.*) - at `\$\.(?P<key>\w+)(?P<rest>[^`]*)`$")


def build_config(
    file_values: dict[str, Any],
    overrides: dict[str, Any],
    *,
    source: str | os.PathLike[str] | None = None,
) -> ServerConfig:
    """Merge file settings with overrides (command-line flags win) into a checked ServerConfig.

    ``source`` names the file in error messages. Raises :class:`ConfigError`.
    """
    where = {key: _origin(source) for key in file_values}
    where.update(dict.fromkeys(overrides, "on the command line"))
    merged = {**file_values, **overrides}
    for key in SIZE_FIELDS:
        if isinstance(merged.get(key), str):
            try:
                merged[key] = parse_size(merged[key])
            except ValueError as exc:
                raise ConfigError(f"setting '{key}' {where[key]}: {exc}") from None
    try:
        return msgspec.convert(merged, ServerConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_human(exc, where, source)) from None


def _origin(source: str | os.PathLike[str] | None) -> str:
    return f"in {os.fspath(source)}" if source is not None else "in the configuration"


def _human(exc: msgspec.ValidationError, where: dict[str, str], source: Any) -> str:
    """msgspec's message, reworded for someone editing a config file or typing flags."""
    message = str(exc)
    if (unknown := _UNKNOWN.fullmatch(message)) is not None:
        key = unknown["key"]
        text = f"unknown setting '{key}' {where.get(key, _origin(source))}"
        guesses = difflib.get_close_matches(key.replace("-", "_"), _FIELDS, n=1)
        return f"{text} (did you mean '{guesses[0]}'?)" if guesses else text
    if (typed := _AT_PATH.fullmatch(message)) is not None:
        key = typed["key"]
        what = typed["what"].replace("`", "")
        what = what[0].lower() + what[1:]
        return f"setting '{key}{typed['rest']}' {where.get(key, _origin(source))}: {what}"
    # A check in __post_init__: its message starts with the setting's name.
    key = message.split(" ", 1)[0]
    return f"{message} ({where[key]})" if key in where else message


def _toml_string(text: str) -> str:
    # TOML basic strings: escape quote, backslash and control characters (DEL included).
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def dump_toml(config: ServerConfig) -> str:
    """``config`` as TOML, one setting a line; unset optional settings appear as comments."""
    lines = []
    for name in _TOML_ORDER:
        value = getattr(config, name)
        # TOML has no null: an unset setting is written commented out.
        lines.append(f"# {name} is not set" if value is None else f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _no_timeout_if_infinite(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """A server-side TLS context from tls_cert/tls_key (and tls_ca), or None without TLS.

    Raises OSError or ssl.SSLError when a certificate or key cannot be loaded.
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    # Built from PROTOCOL_TLS_SERVER rather than create_default_context(CLIENT_AUTH): the
    # latter loads the system CAs, which would let any publicly issued client certificate in.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195, as the DICOM TLS profiles ask
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=config.tls_ca)
    return context
