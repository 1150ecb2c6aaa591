"""Ctrl+C on an in-process SCP (``AE.start_server(block=True)``) stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from hsscp import AE

from .peers import free_port, wait_for_port

SCRIPT = textwrap.dedent(
    """
    import sys
    from hsscp import AE, VerificationPresentationContexts

    ae = AE("HSSCP")
    ae.supported_contexts = VerificationPresentationContexts
    ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True)
    print("start_server returned", flush=True)
    """
)


def _interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigint_stops_the_server_without_a_stray_coroutine_warning(tmp_path) -> None:
    script = tmp_path / "scp.py"
    script.write_text(SCRIPT)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_port(port, proc=proc, timeout=20)
    # With an association open, so the stop has something to abort.
    scu = AE("SCU")
    scu.add_requested_context("1.2.840.10008.1.1")
    assoc = scu.associate("127.0.0.1", port, ae_title="HSSCP")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    out, err = _interrupt(proc)
    assoc.abort()
    assert proc.returncode == 0, err
    # start_server(block=True) returns on Ctrl+C, as pynetdicom's does.
    assert "start_server returned" in out
    assert "Exception ignored" not in err and "GeneratorExit" not in err, err
    assert "Traceback" not in err, err
