"""The hsscp command: storescp flags onto ServerConfig, the config file, exit codes."""

from __future__ import annotations

import argparse
import importlib.machinery
import logging
import subprocess
import sys
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import hsscp
from hsscp import cli
from hsscp.config import ConfigError, ServerConfig
from tests.tls_certs import make_pki

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["104"], "port", 104),
        (["-aet", "PACS"], "ae_title", "PACS"),
        (["--aetitle", "PACS"], "ae_title", "PACS"),
        (["--ae-title", "PACS"], "ae_title", "PACS"),
        (["-od", "/data"], "output_directory", "/data"),
        (["--output-directory", "/data"], "output_directory", "/data"),
        (["--max-pdu", "16384"], "max_pdu", 16384),
        (["-pdu", "16384"], "max_pdu", 16384),
        (["--max-pdu", "0"], "max_pdu", 0),
        (["--max-pdu", "4M"], "max_pdu", 4 * 1024 * 1024),
        (["-ta", "5"], "acse_timeout", 5.0),
        (["--acse-timeout", "5.5"], "acse_timeout", 5.5),
        (["-td", "7"], "dimse_timeout", 7.0),
        (["--dimse-timeout", "7"], "dimse_timeout", 7.0),
        (["-tn", "9"], "network_timeout", 9.0),
        (["--network-timeout", "9"], "network_timeout", 9.0),
        (["-to", "9"], "network_timeout", 9.0),
        (["-q"], "log_level", "quiet"),
        (["--quiet"], "log_level", "quiet"),
        (["-v"], "log_level", "verbose"),
        (["--verbose"], "log_level", "verbose"),
        (["-d"], "log_level", "debug"),
        (["--debug"], "log_level", "debug"),
        (["--log-level", "quiet"], "log_level", "quiet"),
        (["-q", "-d"], "log_level", "debug"),  # the last one wins
        (["--bind", "127.0.0.1"], "bind", "127.0.0.1"),
        (["-ba", "::1"], "bind", "::1"),
        (["--bind-address", "::1"], "bind", "::1"),
        (["--ignore"], "ignore", True),
        (["--no-ignore"], "ignore", False),
        (["--workers", "3"], "workers", 3),
        (["--writers", "5"], "writers", 5),
        (["--max-associations", "8"], "max_associations", 8),
        (["--layout", "flat"], "layout", "flat"),
        (["--fsync", "none"], "fsync", "none"),
        (["--fsync", "file+dir"], "fsync", "file+dir"),
        (["--spool-threshold", "512K"], "spool_threshold", 512 * 1024),
        (["--spool-threshold", "4M"], "spool_threshold", 4 * 1024 * 1024),
        (["--spool-threshold", "70000"], "spool_threshold", 70000),
        (["--graceful-timeout", "0"], "graceful_timeout", 0.0),
        (["--graceful-timeout", "12.5"], "graceful_timeout", 12.5),
        (["--tls-cert", "s.crt", "--tls-key", "s.key"], "tls_cert", "s.crt"),
        (["--tls-cert", "s.crt", "--tls-key", "s.key"], "tls_key", "s.key"),
        (["--tls-cert", "s.crt", "--tls-key", "s.key", "--tls-ca", "ca.crt"], "tls_ca", "ca.crt"),
        (["--require-calling-aet", "CT1"], "require_calling_aet", ["CT1"]),
        (["--require-calling-aet", "CT1", "--require-calling-aet", "MR2"],
         "require_calling_aet", ["CT1", "MR2"]),
        (["--require-called-aet"], "require_called_aet", True),
        (["--no-require-called-aet"], "require_called_aet", False),
    ],
)
def test_flag_sets_field(argv: list[str], field: str, value: object) -> None:
    config = cli.parse_storescp(argv)
    assert getattr(config, field) == value
    assert type(getattr(config, field)) is type(value)


def test_dcmtk_command_line() -> None:
    config = cli.parse_storescp(
        ["-v", "-aet", "STORESCP", "-od", "/tmp/in", "-pdu", "65536", "-ta", "10", "-td", "20",
         "-to", "30", "104"]
    )
    assert config == ServerConfig(
        port=104, ae_title="STORESCP", output_directory="/tmp/in", max_pdu=65536,
        acse_timeout=10, dimse_timeout=20, network_timeout=30, log_level="verbose",
    )


def test_no_flags_is_the_default_config() -> None:
    assert cli.parse_storescp([]) == ServerConfig()


def test_options_are_not_abbreviated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_storescp(["--work", "2"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --work" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--spool-threshold", "big"], "argument --spool-threshold: 'big' is not a size in bytes"),
        (["--workers", "many"], "argument --workers: invalid int value: 'many'"),
        (["--layout", "tree"], "argument --layout: invalid choice: 'tree'"),
        (["--fsync", "always"], "argument --fsync: invalid choice: 'always'"),
        (["port"], "argument PORT: invalid int value: 'port'"),
    ],
)
def test_malformed_flags_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_storescp(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_invalid_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"workers must be at least 1, not 0 \(on the command line\)"):
        cli.parse_storescp(["--workers", "0"])


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "hsscp.toml"
    path.write_text(
        'port = 104\nae_title = "FILE"\noutput_directory = "/srv/dicom"\nworkers = 3\n'
        'log_level = "debug"\nignore = true\nrequire_calling_aet = ["A", "B"]\n'
        'spool_threshold = "1M"\n'
    )
    return path


def test_file_values_apply_when_flags_are_absent(config_file: Path) -> None:
    config = cli.parse_storescp(["--config", str(config_file)])
    assert config == ServerConfig(
        port=104, ae_title="FILE", output_directory="/srv/dicom", workers=3, log_level="debug",
        ignore=True, require_calling_aet=["A", "B"], spool_threshold=1024 * 1024,
    )


def test_flags_override_the_file(config_file: Path) -> None:
    config = cli.parse_storescp(
        ["--config", str(config_file), "-aet", "FLAG", "-q", "--no-ignore",
         "--require-calling-aet", "C", "11113"]
    )
    assert (config.port, config.ae_title, config.log_level, config.ignore) == (11113, "FLAG", "quiet", False)
    assert config.require_calling_aet == ["C"]
    # Not given on the command line: still the file's.
    assert (config.output_directory, config.workers, config.spool_threshold) == ("/srv/dicom", 3, 1024 * 1024)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("ports = 104\n")
    with pytest.raises(ConfigError, match=f"unknown setting 'ports' in {path}"):
        cli.parse_storescp(["--config", str(path)])


# --- main ---------------------------------------------------------------------


@pytest.fixture
def restore_logging():
    from hsscp.association_log import show_info_lines

    logger = logging.getLogger("hsscp")
    exchange = logging.getLogger("hsscp.exchange")  # configure_logging sets its level too
    handlers, level, exchange_level = list(logger.handlers), logger.level, exchange.level
    shown = show_info_lines()  # and which on-call lines are printed
    show_info_lines(*shown)
    yield logger
    logger.handlers, logger.level = handlers, level
    exchange.setLevel(exchange_level)
    show_info_lines(*shown)


@dataclass
class FakeResult:
    exit_code: int
    summary: str


@pytest.fixture
def fake_supervisor(monkeypatch: pytest.MonkeyPatch, restore_logging):
    """workers.scp replaced by a module whose serve() records its config."""
    module = types.ModuleType("workers.scp")
    module.calls = []  # type: ignore[attr-defined]

    def serve(config: ServerConfig) -> FakeResult:
        module.calls.append(config)  # type: ignore[attr-defined]
        return FakeResult(exit_code=module.exit_code, summary="3 instances, 1.5 MB")  # type: ignore[attr-defined]

    module.serve = serve  # type: ignore[attr-defined]
    module.exit_code = 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "workers.scp", module)
    return module


def test_main_serves_and_prints_summary(fake_supervisor, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["storescp", "-aet", "MAIN", "104"]) == 0
    assert fake_supervisor.calls == [ServerConfig(port=104, ae_title="MAIN")]
    assert capsys.readouterr().out == "3 instances, 1.5 MB\n"


def test_main_returns_the_servers_exit_code(fake_supervisor) -> None:
    fake_supervisor.exit_code = 3
    assert cli.main(["storescp"]) == 3


@pytest.mark.parametrize(
    ("flags", "level"),
    [([], logging.INFO), (["-q"], logging.WARNING), (["-v"], logging.INFO), (["-d"], logging.DEBUG)],
)
def test_main_configures_logging(fake_supervisor, restore_logging, flags: list[str], level: int) -> None:
    assert cli.main(["storescp", *flags]) == 0
    assert restore_logging.level == level
    ours = [h for h in restore_logging.handlers if isinstance(h, logging.StreamHandler)
            and not isinstance(h, logging.FileHandler) and h.stream is sys.stderr]
    assert len(ours) == 1


def test_configure_logging_twice_keeps_one_handler(restore_logging) -> None:
    before = len(restore_logging.handlers)
    cli.configure_logging("info")
    cli.configure_logging("debug")
    assert len(restore_logging.handlers) == before + 1
    assert restore_logging.level == logging.DEBUG


def test_main_config_error(fake_supervisor, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["storescp", "-aet", "WAY_TOO_LONG_AE_TITLE"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hsscp storescp: error: ae_title is not a valid AE title")
    assert fake_supervisor.calls == []


def test_main_bad_tls_files_are_a_config_error(
    fake_supervisor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["storescp", "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key")]
    assert cli.main(argv) == 2
    assert "error: cannot load the TLS certificate, key or CA" in capsys.readouterr().err
    assert fake_supervisor.calls == []


def test_main_with_tls(fake_supervisor, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    argv = ["storescp", "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
            "--tls-ca", str(pki.ca_cert)]
    assert cli.main(argv) == 0
    assert fake_supervisor.calls[0].tls_ca == str(pki.ca_cert)


def test_print_config(fake_supervisor, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["storescp", "--config", str(config_file), "-aet", "FLAG", "--print-config"]) == 0
    out = capsys.readouterr().out
    printed = tomllib.loads(out)
    assert printed["ae_title"] == "FLAG"
    assert printed["port"] == 104
    assert printed["spool_threshold"] == 1024 * 1024
    assert "# tls_cert is not set" in out
    assert fake_supervisor.calls == []
    # What was printed reads back as the same configuration.
    assert cli.parse_storescp(["--config", str(config_file), "-aet", "FLAG"]) == ServerConfig(**printed)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"hsscp {hsscp.__version__}\n"


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["storescp", "--help"]) == 0
    assert "--spool-threshold" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


# --- the load generator's subcommands -----------------------------------------


def test_loadgen_subcommands_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(cli.LOADGEN_CLI)
    module.__spec__ = importlib.machinery.ModuleSpec(cli.LOADGEN_CLI, None)

    def register(subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser("echoscu")
        p.add_argument("port", type=int)
        p.set_defaults(func=lambda args: 40 + args.port)

    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, cli.LOADGEN_CLI, module)
    assert cli.main(["echoscu", "2"]) == 42


def test_cli_works_without_the_load_generator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(name: str, package: str | None = None) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(cli.importlib.util, "find_spec", missing)
    assert cli.parse_storescp(["104"]).port == 104
    assert cli.main(["storescu"]) == 2
    assert "invalid choice: 'storescu'" in capsys.readouterr().err


# --- as a process ---------------------------------------------------------------


def run_hsscp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsscp", *args], cwd=cwd, capture_output=True, text=True,
        timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_bad_config_file_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('port = 104\nae_titel = "X"\n')
    result = run_hsscp("storescp", "--config", str(bad), "11112", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"hsscp storescp: error: unknown setting 'ae_titel' in {bad} (did you mean 'ae_title'?)\n"
    )


def test_invalid_toml_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1\n")
    result = run_hsscp("storescp", "--config", str(bad), "11112", cwd=tmp_path)
    assert result.returncode == 2
    assert f"hsscp storescp: error: config file {bad} is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_print_config_and_version_as_a_process(tmp_path: Path) -> None:
    result = run_hsscp("storescp", "-aet", "PROC", "--print-config", "104", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["ae_title"] == "PROC"
    version = run_hsscp("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"hsscp {hsscp.__version__}\n")


# --- DCMTK storescp flags -------------------------------------------------------------

EXPLICIT_LE, EXPLICIT_BE, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2"


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["+xa", "11112"], "port", 11112),  # was "argument PORT: invalid int value: '+xa'"
        (["+xa"], "transfer_syntaxes", []),
        (["--accept-all"], "transfer_syntaxes", []),
        (["+xe"], "transfer_syntaxes", [EXPLICIT_LE, EXPLICIT_BE, IMPLICIT]),
        (["+x="], "transfer_syntaxes", [EXPLICIT_LE, EXPLICIT_BE, IMPLICIT]),
        (["--prefer-big"], "transfer_syntaxes", [EXPLICIT_BE, EXPLICIT_LE, IMPLICIT]),
        (["+xi"], "transfer_syntaxes", [IMPLICIT]),
        (["+xd"], "transfer_syntaxes", ["1.2.840.10008.1.2.1.99", EXPLICIT_LE, EXPLICIT_BE, IMPLICIT]),
        (["+xv"], "transfer_syntaxes", ["1.2.840.10008.1.2.4.90", EXPLICIT_LE, EXPLICIT_BE, IMPLICIT]),
        (["-pm"], "promiscuous", True),
        (["--promiscuous"], "promiscuous", True),
        (["+uf"], "unique_filenames", True),
        (["-fe", ".dcm"], "filename_extension", ".dcm"),
        (["--sort-on-study-uid", "st", "104"], "sort_on_study_uid", "st"),
        (["-su", "st"], "sort_on_study_uid", "st"),
        (["-ll", "warn"], "log_level", "quiet"),
        (["-ll", "trace"], "log_level", "debug"),
        (["--log-level", "debug"], "log_level", "debug"),
        (["-ts", "9"], "network_timeout", 9.0),
        (["--socket-timeout", "9"], "network_timeout", 9.0),
    ],
)
def test_dcmtk_flag_sets_field(argv: list[str], field: str, value: object) -> None:
    assert getattr(cli.parse_storescp(argv), field) == value


@pytest.mark.parametrize("flag", ["+B", "--bit-preserving", "-B", "-dhl", "--disable-host-lookup", "-uf",
                                  "+F", "+t="])
def test_flags_for_what_hsscp_always_does_change_nothing(flag: str) -> None:
    assert cli.parse_storescp([flag, "104"]) == ServerConfig(port=104)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fork", "104"], "argument --fork: every association already runs in a worker process: see --workers"),
        (["+te", "104"], "argument +te/--write-xfer-little: hsscp writes every data set exactly as received"),
        (["-xf", "storescp.cfg", "Default", "104"], "argument -xf/--config-file: hsscp reads its settings from a TOML"),
        (["-ss", "st", "104"], "argument -ss/--sort-conc-studies:"),
        (["--frob", "st", "11112"], "unrecognized arguments: --frob 11112 (unknown flag --frob"),
        (["+zz", "11112"], "unrecognized arguments: +zz (unknown flag +zz"),
        (["-ll", "loud", "104"], "argument -ll/--log-level: 'loud' is not a log level"),
    ],
)
def test_dcmtk_flags_hsscp_cannot_honour_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_storescp(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "invalid int value" not in err


@pytest.mark.parametrize(
    ("flags", "setting"),
    [(["-fe", ".txt"], "filename_extension"),
     (["-su", "st"], "sort_on_study_uid")],
)
def test_settings_the_server_cannot_honour_yet_refuse_to_start(
    fake_supervisor, capsys: pytest.CaptureFixture[str], flags: list[str], setting: str
) -> None:
    assert cli.main(["storescp", *flags, "104"]) == 2
    assert fake_supervisor.calls == []  # refused before anything starts
    err = capsys.readouterr().err
    assert err.startswith(f"hsscp storescp: error: setting '{setting}'") and "not supported yet" in err


def test_unique_filenames_keep_every_copy_as_dcmtk_does() -> None:
    assert cli.parse_storescp(["+uf"]).on_duplicate == "rename"
    assert cli.parse_storescp(["+uf", "--on-duplicate", "rename"]).process_settings().on_duplicate == "rename"
    with pytest.raises(ConfigError, match="contradicts"):
        cli.parse_storescp(["+uf", "--on-duplicate", "reject"])


def test_the_same_settings_in_a_config_file_refuse_to_start(fake_supervisor, tmp_path: Path) -> None:
    path = tmp_path / "hsscp.toml"
    path.write_text('sort_on_study_uid = "st"\n')
    assert cli.main(["storescp", "--config", str(path)]) == 2
    assert fake_supervisor.calls == []


@pytest.mark.parametrize(
    ("title", "reason"),
    [("ÄRZTE", "is not ASCII"), ("A\\B", "contains a backslash"), ("A\tB", "contains control characters"),
     ("X" * 17, "longer than 16 characters")],
)
def test_ae_title_errors_give_the_right_reason(title: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        cli.parse_storescp(["-aet", title])
