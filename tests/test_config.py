"""ServerConfig: defaults, validation, TOML files merged with overrides, the TLS context."""

from __future__ import annotations

import math
import os
import ssl
import tomllib
from pathlib import Path

import msgspec
import pytest

from hsscp.config import (
    ConfigError,
    ProcessSettings,
    ServerConfig,
    build_config,
    dump_toml,
    load_config_file,
    parse_size,
    ssl_context,
)
from tests.tls_certs import make_pki


def test_defaults() -> None:
    config = ServerConfig()
    assert config.port == 11112
    assert config.bind == ""
    assert config.ae_title == "HSSCP"
    assert config.output_directory == "received"
    assert config.max_pdu == 1048576
    assert (config.acse_timeout, config.dimse_timeout, config.network_timeout) == (30, 30, 60)
    assert config.log_level == "info"
    assert config.workers == config.writers == (os.cpu_count() or 1)
    assert config.max_associations == 64
    assert config.layout == "study"
    assert config.fsync == "file"
    assert config.spool_threshold == 4 * 1024 * 1024
    assert config.graceful_timeout == 30
    assert config.tls_cert is config.tls_key is config.tls_ca is None
    assert not config.tls
    assert config.require_calling_aet == []
    assert config.require_called_aet is False
    assert config.ignore is False


def test_frozen_and_lists_not_shared() -> None:
    config = ServerConfig()
    with pytest.raises(AttributeError):
        config.port = 104  # type: ignore[misc]
    assert ServerConfig().require_calling_aet is not config.require_calling_aet


def test_ae_titles_are_stored_normalized() -> None:
    config = ServerConfig(ae_title="  STORE  ", require_calling_aet=["CT1 ", b"MR2"])  # type: ignore[list-item]
    assert config.ae_title == "STORE"
    assert config.require_calling_aet == ["CT1", "MR2"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"port": -1}, "port must be 0-65535, not -1"),
        ({"port": 65536}, "port must be 0-65535, not 65536"),
        ({"ae_title": ""}, "ae_title is not a valid AE title"),
        ({"ae_title": "A" * 17}, "longer than 16 characters"),
        ({"ae_title": "BAD\\AET"}, "backslash"),
        ({"require_calling_aet": ["OK", "   "]}, "require_calling_aet holds an invalid AE title"),
        ({"workers": 0}, "workers must be at least 1, not 0"),
        ({"writers": 0}, "writers must be at least 1, not 0"),
        ({"max_associations": 0}, "max_associations must be at least 1, not 0"),
        ({"max_pdu": 4095}, "max_pdu must be 0 (unlimited) or 4096 to 4294967295, not 4095"),
        ({"max_pdu": 2**32}, "max_pdu must be 0 (unlimited) or 4096"),
        ({"max_pdu": -1}, "max_pdu must be 0"),
        ({"log_level": "loud"}, "log_level must be one of 'quiet', 'info', 'verbose', 'debug', not 'loud'"),
        ({"layout": "tree"}, "layout must be one of 'study', 'flat', not 'tree'"),
        ({"fsync": "dir"}, "fsync must be one of 'none', 'file', 'file+dir', not 'dir'"),
        ({"acse_timeout": 0}, "acse_timeout must be more than 0 seconds"),
        ({"dimse_timeout": -1.5}, "dimse_timeout must be more than 0 seconds"),
        ({"network_timeout": math.nan}, "network_timeout must be more than 0 seconds"),
        ({"graceful_timeout": -1}, "graceful_timeout must be 0 seconds or more"),
        ({"tls_cert": "server.crt"}, "tls_cert and tls_key must be given together"),
        ({"tls_key": "server.key"}, "tls_cert and tls_key must be given together"),
        ({"tls_ca": "ca.crt"}, "tls_ca (verify client certificates) needs tls_cert and tls_key"),
        ({"spool_threshold": 65535}, "spool_threshold must be at least 65536 bytes (64K), not 65535"),
    ],
)
def test_validation_errors(settings: dict, message: str) -> None:
    with pytest.raises(ValueError) as direct:
        ServerConfig(**settings)
    assert message in str(direct.value)
    with pytest.raises(ConfigError) as merged:
        build_config({}, settings)
    assert message in str(merged.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"port": 0},
        {"port": 65535},
        {"max_pdu": 0},
        {"max_pdu": 4096},
        {"max_pdu": 2**32 - 1},
        {"spool_threshold": 65536},
        {"graceful_timeout": 0},
        {"network_timeout": math.inf},
        {"tls_cert": "a.crt", "tls_key": "a.key"},
        {"tls_cert": "a.crt", "tls_key": "a.key", "tls_ca": "ca.crt"},
        {"log_level": "quiet", "layout": "flat", "fsync": "file+dir"},
        {"fsync": "none"},
    ],
)
def test_limits_accepted(settings: dict) -> None:
    assert build_config({}, settings) == ServerConfig(**settings)


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("4194304", 4194304), ("512K", 524288), ("512k", 524288), ("4M", 4194304),
     ("4MiB", 4194304), ("4mb", 4194304), ("1G", 2**30), ("100B", 100), (" 64K ", 65536)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "4T", "-1", "1.5M", "4 M B", "0x10"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size in bytes"):
        parse_size(text)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_config_file(tmp_path: Path) -> None:
    path = write(tmp_path / "hsscp.toml", 'port = 104\nae_title = "PACS"\nrequire_calling_aet = ["A"]\n')
    assert load_config_file(path) == {"port": 104, "ae_title": "PACS", "require_calling_aet": ["A"]}


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=f"cannot read config file {path}: No such file"):
        load_config_file(path)


def test_load_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "port = \n")
    with pytest.raises(ConfigError, match=f"config file {path} is not valid TOML"):
        load_config_file(path)


def test_file_values_and_overrides() -> None:
    file_values = {"port": 104, "ae_title": "FILE", "workers": 3, "acse_timeout": 5}
    config = build_config(file_values, {"ae_title": "FLAG", "writers": 2}, source="x.toml")
    assert (config.port, config.ae_title, config.workers, config.writers) == (104, "FLAG", 3, 2)
    assert config.acse_timeout == 5.0 and isinstance(config.acse_timeout, float)
    # Everything else keeps its default.
    assert config.output_directory == "received"


def test_override_replaces_a_list() -> None:
    config = build_config({"require_calling_aet": ["A", "B"]}, {"require_calling_aet": ["C"]})
    assert config.require_calling_aet == ["C"]


def test_override_repairs_a_bad_file_value() -> None:
    assert build_config({"port": 70000}, {"port": 104}).port == 104


def test_sizes_as_strings_in_a_file() -> None:
    config = build_config({"spool_threshold": "512K", "max_pdu": "64K"}, {})
    assert (config.spool_threshold, config.max_pdu) == (524288, 65536)


def test_bad_size_string_names_setting_and_file() -> None:
    with pytest.raises(ConfigError) as exc:
        build_config({"spool_threshold": "lots"}, {}, source="/etc/hsscp.toml")
    assert str(exc.value).startswith("setting 'spool_threshold' in /etc/hsscp.toml: 'lots' is not a size")


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path / "x.toml", "port = 104\nfoo = 1\n")
    with pytest.raises(ConfigError) as exc:
        build_config(load_config_file(path), {}, source=path)
    assert str(exc.value) == f"unknown setting 'foo' in {path}"


def test_unknown_key_suggests_the_underscore_spelling() -> None:
    with pytest.raises(ConfigError) as exc:
        build_config({"output-directory": "x"}, {}, source="x.toml")
    assert str(exc.value) == "unknown setting 'output-directory' in x.toml (did you mean 'output_directory'?)"


def test_unknown_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^unknown setting 'tls' in x.toml"):
        build_config({"tls": {"cert": "a"}}, {}, source="x.toml")


def test_wrong_type_names_setting_and_origin() -> None:
    with pytest.raises(ConfigError) as exc:
        build_config({"port": "104"}, {}, source="x.toml")
    assert str(exc.value) == "setting 'port' in x.toml: expected int, got str"
    with pytest.raises(ConfigError) as exc:
        build_config({}, {"ignore": "yes"})
    assert str(exc.value) == "setting 'ignore' on the command line: expected bool, got str"
    with pytest.raises(ConfigError) as exc:
        build_config({"require_calling_aet": ["A", 3]}, {}, source="x.toml")
    assert str(exc.value) == "setting 'require_calling_aet[1]' in x.toml: expected str, got int"


def test_booleans_are_not_integers() -> None:
    with pytest.raises(ConfigError, match="setting 'workers' in x.toml: expected int, got bool"):
        build_config({"workers": True}, {}, source="x.toml")


def test_check_error_names_its_origin() -> None:
    with pytest.raises(ConfigError) as exc:
        build_config({"port": 70000}, {}, source="x.toml")
    assert str(exc.value) == "port must be 0-65535, not 70000 (in x.toml)"
    with pytest.raises(ConfigError) as exc:
        build_config({}, {"workers": 0})
    assert str(exc.value) == "workers must be at least 1, not 0 (on the command line)"


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_toml_round_trip(tmp_path: Path) -> None:
    config = ServerConfig(
        port=104, bind="127.0.0.1", ae_title="PACS", output_directory='C:\\dicom "in"\tbox',
        max_pdu=0, network_timeout=math.inf, log_level="debug", workers=3, writers=5,
        layout="flat", fsync="file+dir", tls_cert="s.crt", tls_key="s.key",
        require_calling_aet=["CT1", "MR2"], require_called_aet=True, ignore=True,
    )
    text = config.to_toml()
    assert text == dump_toml(config)
    path = write(tmp_path / "dump.toml", text)
    assert build_config(load_config_file(path), {}, source=path) == config


def test_toml_leaves_unset_settings_as_comments() -> None:
    text = ServerConfig().to_toml()
    assert "# tls_ca is not set\n" in text
    assert "tls_ca" not in tomllib.loads(text)
    assert set(tomllib.loads(text)) == set(ServerConfig.__struct_fields__) - {"tls_cert", "tls_key", "tls_ca"}


def test_to_toml_escapes_control_characters() -> None:
    text = ServerConfig(output_directory="a\x01b\x7fc\u00e9").to_toml()
    assert tomllib.loads(text)["output_directory"] == "a\x01b\x7fc\u00e9"


def test_convert_from_msgspec_builtins() -> None:
    config = ServerConfig(port=104)
    assert msgspec.convert(msgspec.to_builtins(config), ServerConfig) == config


# --- TLS -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_no_tls_no_context() -> None:
    assert ssl_context(ServerConfig()) is None


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    """A TLS handshake through memory BIOs; raises ssl.SSLError when either side refuses."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    done = {"s": False, "c": False}
    for _ in range(20):
        for name, obj in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3 servers check the client certificate after their side completes.
            c.write(b"x")
            s_in.write(c_out.read())
            s.read(1)
            return
    raise AssertionError("handshake did not finish")


def test_server_context(pki) -> None:
    config = ServerConfig(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    context = ssl_context(config)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    _handshake(context, pki.client_context())


def test_mutual_tls_context(pki) -> None:
    config = ServerConfig(
        tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), tls_ca=str(pki.ca_cert)
    )
    context = ssl_context(config)
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    # Only the configured CA is trusted for client certificates, not the system's.
    assert [dict(ca["subject"][0])["commonName"] for ca in context.get_ca_certs()] == ["hsscp test CA"]
    _handshake(context, pki.client_context(with_cert=True))
    with pytest.raises(ssl.SSLError):
        _handshake(context, pki.client_context(with_cert=False))


def test_bad_certificate_paths(pki, tmp_path: Path) -> None:
    missing = ServerConfig(tls_cert=str(tmp_path / "none.crt"), tls_key=str(pki.server_key))
    with pytest.raises(OSError):
        ssl_context(missing)
    mismatched = ServerConfig(tls_cert=str(pki.server_cert), tls_key=str(pki.client_key))
    with pytest.raises(ssl.SSLError):
        ssl_context(mismatched)


# --- the split: an AE for the protocol, ProcessSettings for the processes ---------


def test_process_settings_are_the_process_fields_only() -> None:
    config = ServerConfig(port=104, ae_title="PACS", workers=3, writers=1, layout="flat", async_ops=4)
    settings = config.process_settings()
    assert settings == ProcessSettings(workers=3, writers=1, layout="flat", async_ops=4)
    assert not {"port", "ae_title", "acse_timeout", "max_associations"} & set(ProcessSettings.__struct_fields__)


def test_process_settings_are_checked_on_their_own() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, not 0"):
        ProcessSettings(workers=0)
    with pytest.raises(ValueError, match="fsync must be one of"):
        ProcessSettings(fsync="always")
    with pytest.raises(TypeError):
        ProcessSettings(acse_timeout=5)  # type: ignore[call-arg]  # the AE's, not a process setting


def test_the_ae_carries_the_protocol_settings() -> None:
    config = ServerConfig(
        ae_title="PACS", acse_timeout=5, dimse_timeout=7, network_timeout=math.inf, max_pdu=0,
        max_associations=9, require_called_aet=True, require_calling_aet=["CT1", "MR2"],
    )
    ae = config.application_entity()
    assert ae.ae_title == "PACS"
    assert (ae.acse_timeout, ae.dimse_timeout) == (5, 7)
    assert ae.network_timeout is None  # infinite: no timeout, as pynetdicom means None
    assert ae.maximum_pdu_size == 0 and ae.maximum_associations == 9
    assert ae.require_called_aet is True and ae.require_calling_aet == ["CT1", "MR2"]
    contexts = {str(cx.abstract_syntax): cx for cx in ae.supported_contexts}
    assert "1.2.840.10008.1.1" in contexts and "1.2.840.10008.5.1.4.1.1.2" in contexts  # Verification, CT
    assert "1.2.840.10008.1.2.4.50" in contexts["1.2.840.10008.5.1.4.1.1.2"].transfer_syntax  # JPEG baseline
