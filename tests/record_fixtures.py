"""Re-record the PDU byte fixtures in tests/fixtures from real peers.

Usage: python tests/record_fixtures.py

Every scenario lets a real requestor (DCMTK or pynetdicom) talk to a real
acceptor on 127.0.0.1 through a RecordingProxy. Each recorded PDU is saved as
tests/fixtures/<peer that sent it>/<scenario>-<nn>-<pdu name>.bin, where nn is
its position in the scenario's conversation; MANIFEST.json says who sent what.
P-DATA-TF PDUs beyond the first two from the requestor and the first one from
the acceptor are left out to keep the fixtures small.
"""

from __future__ import annotations

import array
import contextlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pynetdicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
)
from pynetdicom import AE, Association, evt
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.sop_class import Verification

try:
    from .peers import HOST, dcmtk_env, free_port, require_binary, running
    from .recorder import AC, PDU_NAMES, RQ, RecordingProxy
except ImportError:  # run as a script: python tests/record_fixtures.py
    from peers import HOST, dcmtk_env, free_port, require_binary, running
    from recorder import AC, PDU_NAMES, RQ, RecordingProxy

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MANIFEST = FIXTURES / "MANIFEST.json"

P_DATA_TF = 0x04
# How many P-DATA-TF PDUs each direction of a scenario keeps.
P_DATA_KEPT = {RQ: 2, AC: 1}

SCU_AET = "HSSCP-SCU"
SCP_AET = "STORESCP"
PYNETDICOM_SCP_AET = "PYNETDICOM-SCP"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"
# Storage service class application information (PS3.4 B.3.1): level 2
# conformance, signature level 3, coercion allowed.
STORAGE_APP_INFO = bytes([2, 0, 3, 0, 1, 0])
TOOL_TIMEOUT = 60.0
# User identity types (PS3.8 D.3.3.7.1).
USERNAME_AND_PASSCODE = 2
JSON_WEB_TOKEN = 5
# An unsigned JWT ({"alg":"none"} / {"sub":"hsscp"}): only its bytes matter here.
JWT = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJoc3NjcCJ9."
LARGE_CT_UID_ROOT = "2.25.271828182845904523536028747135266249"

DIMSE_NAMES = {
    0x0001: "C-STORE-RQ",
    0x8001: "C-STORE-RSP",
    0x0020: "C-FIND-RQ",
    0x8020: "C-FIND-RSP",
    0x0030: "C-ECHO-RQ",
    0x8030: "C-ECHO-RSP",
}


@dataclass(frozen=True)
class Sender:
    """The implementation on one side of a scenario."""

    peer: str  # fixture subdirectory: "dcmtk" or "pynetdicom"
    program: str  # e.g. "DCMTK echoscu 3.6.7"


@dataclass(frozen=True)
class Recording:
    """Every PDU of one scenario, with who sent each direction."""

    scenario: str
    description: str
    senders: dict[str, Sender]
    pdus: list[tuple[str, bytes]]


# --- peers -------------------------------------------------------------------


def dcmtk(tool: str) -> Sender:
    """Sender for DCMTK ``tool``, with the version the binary reports."""
    path = require_binary(tool)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"v(\d+\.\d+\.\d+)", out)
    version = match.group(1) if match else "unknown"
    return Sender("dcmtk", f"DCMTK {tool} {version}")


def pynetdicom_sender(role: str) -> Sender:
    """Sender for pynetdicom acting as ``role`` ("SCU" or "SCP")."""
    return Sender("pynetdicom", f"pynetdicom {pynetdicom.__version__} {role}")


def run_tool(argv: list[str], expect_ok: bool = True) -> None:
    """Run a DCMTK client to completion; fail loudly if its exit status is not as expected."""
    command = [require_binary(argv[0]), *argv[1:]]
    done = subprocess.run(
        command, env=dcmtk_env(), capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )
    if (done.returncode == 0) != expect_ok:
        raise RuntimeError(
            f"{command!r} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )


@contextlib.contextmanager
def storescp(*options: str) -> Iterator[int]:
    """Run DCMTK storescp (AE title STORESCP) writing into a temp dir; yield its port."""
    port = free_port()
    with tempfile.TemporaryDirectory() as out_dir:
        argv = ["storescp", "-aet", SCP_AET, "-od", out_dir, *options, str(port)]
        with running(argv, env=dcmtk_env(), ready_port=port):
            yield port


@contextlib.contextmanager
def pynetdicom_scp(ae: AE, handlers: list | None = None) -> Iterator[int]:
    """Serve ``ae`` on a free 127.0.0.1 port in background threads; yield the port."""
    port = free_port()
    server = ae.start_server((HOST, port), block=False, evt_handlers=handlers or [])
    try:
        yield port
    finally:
        server.shutdown()


def record(target_port: int, client: Callable[[int], None]) -> list[tuple[str, bytes]]:
    """Run ``client(proxy_port)`` against the target through a recorder; return its PDUs."""
    with RecordingProxy(target_port) as proxy:
        client(proxy.port)
        proxy.wait_closed()
        if proxy.incomplete:
            raise RuntimeError("a connection ended in the middle of a PDU")
        return proxy.pdus


# --- datasets ----------------------------------------------------------------


def pydicom_file(name: str) -> str:
    """Path of one of pydicom's bundled test files."""
    path = get_testdata_file(name)
    if path is None:
        raise RuntimeError(f"pydicom does not ship {name}")
    return str(path)


def _ct_pixels(rows: int, cols: int) -> bytes:
    # A deterministic 12-bit ramp/checker pattern that does not compress to nothing.
    values = array.array(
        "H", (((x * 7) ^ (y * 13)) & 0x0FFF for y in range(rows) for x in range(cols))
    )
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def write_large_ct(path: Path, rows: int = 512, cols: int = 512) -> None:
    """Write a deterministic 16-bit CT image (512 KiB of pixels by default)."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    # Fixed UIDs keep the recorded C-STORE bytes identical from run to run.
    ds.SOPInstanceUID = f"{LARGE_CT_UID_ROOT}.3"
    ds.StudyInstanceUID = f"{LARGE_CT_UID_ROOT}.1"
    ds.SeriesInstanceUID = f"{LARGE_CT_UID_ROOT}.2"
    ds.Modality = "CT"
    ds.PatientName = "FIXTURE^LARGE"
    ds.PatientID = "HSSCP-LARGE"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.PixelData = _ct_pixels(rows, cols)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


# --- scenarios: DCMTK <-> DCMTK ---------------------------------------------


def echo_argv(port: int, *options: str, called: str = SCP_AET) -> list[str]:
    return ["echoscu", "-aet", SCU_AET, "-aec", called, *options, HOST, str(port)]


def storescu_run(port: int, options: list[str], files: list[str], expect_ok: bool = True) -> None:
    run_tool(
        ["storescu", "-aet", SCU_AET, "-aec", SCP_AET, *options, HOST, str(port), *files], expect_ok
    )


def echoscu_storescp() -> Recording:
    with storescp() as port:
        pdus = record(port, lambda p: run_tool(echo_argv(p)))
    return Recording(
        "echoscu-storescp",
        "C-ECHO, then A-RELEASE",
        {RQ: dcmtk("echoscu"), AC: dcmtk("storescp")},
        pdus,
    )


def echoscu_storescp_abort() -> Recording:
    with storescp() as port:
        pdus = record(port, lambda p: run_tool(echo_argv(p, "--abort")))
    return Recording(
        "echoscu-storescp-abort",
        "C-ECHO, then the requestor sends A-ABORT instead of releasing (echoscu --abort)",
        {RQ: dcmtk("echoscu"), AC: dcmtk("storescp")},
        pdus,
    )


def echoscu_storescp_refuse() -> Recording:
    with storescp("--refuse") as port:
        pdus = record(port, lambda p: run_tool(echo_argv(p), expect_ok=False))
    return Recording(
        "echoscu-storescp-refuse",
        "storescp --refuse answers the A-ASSOCIATE-RQ with A-ASSOCIATE-RJ",
        {RQ: dcmtk("echoscu"), AC: dcmtk("storescp")},
        pdus,
    )


def storescu_storescp() -> Recording:
    files = [pydicom_file("MR_small.dcm"), pydicom_file("CT_small.dcm")]
    with storescp() as port:
        pdus = record(port, lambda p: storescu_run(p, [], files))
    return Recording(
        "storescu-storescp",
        "storescu's default proposal: 128 presentation contexts (64 storage SOP classes, each "
        "twice); stores MR_small and CT_small",
        {RQ: dcmtk("storescu"), AC: dcmtk("storescp")},
        pdus,
    )


def storescu_storescp_required() -> Recording:
    files = [pydicom_file("MR_small.dcm"), pydicom_file("CT_small.dcm")]
    with storescp() as port:
        pdus = record(port, lambda p: storescu_run(p, ["-R"], files))
    return Recording(
        "storescu-storescp-required",
        "storescu -R proposes only the contexts MR_small and CT_small need, stores both",
        {RQ: dcmtk("storescu"), AC: dcmtk("storescp")},
        pdus,
    )


def storescu_storescp_maxpdu16k() -> Recording:
    with tempfile.TemporaryDirectory() as tmp, storescp("-pdu", "16384") as port:
        path = Path(tmp) / "large-ct.dcm"
        write_large_ct(path)
        options = ["-R", "-pdu", "16384", "--max-send-pdu", "16384"]
        pdus = record(port, lambda p: storescu_run(p, options, [str(path)]))
    return Recording(
        "storescu-storescp-maxpdu16k",
        "both sides announce a maximum PDU length of 16384; a generated 512x512 16-bit CT goes out "
        "in full P-DATA-TF PDUs (DCMTK makes them 16384 bytes including the 6-byte header)",
        {RQ: dcmtk("storescu"), AC: dcmtk("storescp")},
        pdus,
    )


def storescu_storescp_abort_after() -> Recording:
    files = [pydicom_file("MR_small.dcm")]
    with storescp("--abort-after") as port:
        pdus = record(port, lambda p: storescu_run(p, ["-R"], files, expect_ok=False))
    return Recording(
        "storescu-storescp-abort-after",
        "storescp --abort-after sends A-ABORT after receiving the C-STORE-RQ",
        {RQ: dcmtk("storescu"), AC: dcmtk("storescp")},
        pdus,
    )


# --- scenarios: pynetdicom <-> DCMTK ----------------------------------------


def scu_ae(*contexts: str) -> AE:
    ae = AE(ae_title=SCU_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for context in contexts:
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    return ae


def scp_ae(**options: object) -> AE:
    ae = AE(ae_title=PYNETDICOM_SCP_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for name, value in options.items():
        setattr(ae, name, value)
    return ae


def associate(ae: AE, port: int, called: str, ext_neg: list | None = None) -> Association:
    assoc = ae.associate(HOST, port, ae_title=called, ext_neg=ext_neg)
    if not assoc.is_established:
        raise RuntimeError(f"pynetdicom could not associate with {called} on port {port}")
    return assoc


def expect_success(status: Dataset) -> None:
    if getattr(status, "Status", None) != 0x0000:
        raise RuntimeError(f"DIMSE failed: {status}")


def pynetdicom_echo(port: int, called: str) -> None:
    """C-ECHO from a pynetdicom SCU, then A-RELEASE."""
    assoc = associate(scu_ae(Verification), port, called)
    try:
        expect_success(assoc.send_c_echo(msg_id=1))
    finally:
        assoc.release()


def pynetdicom_abort(port: int, called: str) -> None:
    """Associate from a pynetdicom SCU, then A-ABORT at once."""
    associate(scu_ae(Verification), port, called).abort()


def pynetdicom_scu_storescp() -> Recording:
    with storescp() as port:
        pdus = record(port, lambda p: pynetdicom_echo(p, SCP_AET))
    return Recording(
        "pynetdicom-scu-storescp",
        "C-ECHO from pynetdicom to storescp, then A-RELEASE",
        {RQ: pynetdicom_sender("SCU"), AC: dcmtk("storescp")},
        pdus,
    )


def pynetdicom_scu_storescp_abort() -> Recording:
    with storescp() as port:
        pdus = record(port, lambda p: pynetdicom_abort(p, SCP_AET))
    return Recording(
        "pynetdicom-scu-storescp-abort",
        "pynetdicom associates with storescp and sends A-ABORT",
        {RQ: pynetdicom_sender("SCU"), AC: dcmtk("storescp")},
        pdus,
    )


def echoscu_pynetdicom_scp() -> Recording:
    ae = scp_ae()
    ae.add_supported_context(Verification)
    with pynetdicom_scp(ae) as port:
        pdus = record(port, lambda p: run_tool(echo_argv(p, called=PYNETDICOM_SCP_AET)))
    return Recording(
        "echoscu-pynetdicom-scp",
        "C-ECHO from echoscu to a pynetdicom SCP, then A-RELEASE",
        {RQ: dcmtk("echoscu"), AC: pynetdicom_sender("SCP")},
        pdus,
    )


def echoscu_pynetdicom_scp_wrong_called_aet() -> Recording:
    ae = scp_ae(require_called_aet=True)
    ae.add_supported_context(Verification)
    with pynetdicom_scp(ae) as port:
        pdus = record(port, lambda p: run_tool(echo_argv(p, called="WRONG-AET"), expect_ok=False))
    return Recording(
        "echoscu-pynetdicom-scp-wrong-called-aet",
        "a pynetdicom SCP requiring its own called AE title rejects echoscu calling WRONG-AET",
        {RQ: dcmtk("echoscu"), AC: pynetdicom_sender("SCP")},
        pdus,
    )


# --- scenarios: pynetdicom <-> pynetdicom -----------------------------------


def user_identity(kind: int, primary: bytes, secondary: bytes = b"") -> UserIdentityNegotiation:
    """A user identity request that asks for a positive response."""
    identity = UserIdentityNegotiation()
    identity.user_identity_type = kind
    identity.primary_field = primary
    identity.secondary_field = secondary
    identity.positive_response_requested = True
    return identity


def extended_negotiation() -> list:
    """One of each user information sub-item a requestor may send."""
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CTImageStorage
    role.scu_role, role.scp_role = True, True

    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 3

    sop_ext = SOPClassExtendedNegotiation()
    sop_ext.sop_class_uid = CTImageStorage
    sop_ext.service_class_application_information = STORAGE_APP_INFO

    common = SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = EnhancedCTImageStorage
    common.service_class_uid = STORAGE_SERVICE_CLASS
    common.related_general_sop_class_identification = [CTImageStorage]

    identity = user_identity(USERNAME_AND_PASSCODE, b"hsscp-user", b"hsscp-password")
    return [role, window, sop_ext, common, identity]


def extneg_scp() -> tuple[AE, list]:
    """A pynetdicom SCP that answers every extended negotiation item it can."""
    ae = scp_ae()
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian, scu_role=True, scp_role=True)
    ae.add_supported_context(EnhancedCTImageStorage, ExplicitVRLittleEndian)
    ae.add_supported_context(Verification)
    handlers = [
        (evt.EVT_USER_ID, lambda event: (True, b"server-response")),
        (evt.EVT_ASYNC_OPS, lambda event: (1, 1)),
        (evt.EVT_SOP_EXTENDED, lambda event: event.app_info),
        (evt.EVT_SOP_COMMON, lambda event: event.items),
    ]
    return ae, handlers


def pynetdicom_scu_pynetdicom_scp_extneg() -> Recording:
    def client(port: int) -> None:
        ae = scu_ae(CTImageStorage, EnhancedCTImageStorage, Verification)
        assoc = associate(ae, port, PYNETDICOM_SCP_AET, extended_negotiation())
        try:
            expect_success(assoc.send_c_echo(msg_id=1))
        finally:
            assoc.release()

    ae, handlers = extneg_scp()
    with pynetdicom_scp(ae, handlers) as port:
        pdus = record(port, client)
    return Recording(
        "pynetdicom-scu-pynetdicom-scp-extneg",
        "A-ASSOCIATE-RQ with role selection, async operations window, SOP class (common) extended "
        "negotiation and user identity (username+passcode, positive response requested); the "
        "A-ASSOCIATE-AC answers with role selection, async operations window and SOP class extended "
        "negotiation (no user identity response: none is defined for username+passcode); "
        "then C-ECHO and A-RELEASE",
        {RQ: pynetdicom_sender("SCU"), AC: pynetdicom_sender("SCP")},
        pdus,
    )


def pynetdicom_scu_pynetdicom_scp_userid_response() -> Recording:
    # pynetdicom only sends a server response for Kerberos, SAML and JWT identities.
    def client(port: int) -> None:
        ae = scu_ae(Verification)
        associate(ae, port, PYNETDICOM_SCP_AET, [user_identity(JSON_WEB_TOKEN, JWT)]).release()

    ae, handlers = extneg_scp()
    with pynetdicom_scp(ae, handlers) as port:
        pdus = record(port, client)
    return Recording(
        "pynetdicom-scu-pynetdicom-scp-userid-response",
        "A-ASSOCIATE-RQ with a JSON web token user identity asking for a positive response; "
        "the A-ASSOCIATE-AC carries the user identity server response b'server-response'; "
        "then A-RELEASE",
        {RQ: pynetdicom_sender("SCU"), AC: pynetdicom_sender("SCP")},
        pdus,
    )


def pynetdicom_scu_pynetdicom_scp_store() -> Recording:
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))

    def client(port: int) -> None:
        assoc = associate(scu_ae(MRImageStorage), port, PYNETDICOM_SCP_AET)
        try:
            expect_success(assoc.send_c_store(ds, msg_id=1))
        finally:
            assoc.release()

    ae = scp_ae()
    ae.add_supported_context(MRImageStorage, ExplicitVRLittleEndian)
    handlers = [(evt.EVT_C_STORE, lambda event: 0x0000)]
    with pynetdicom_scp(ae, handlers) as port:
        pdus = record(port, client)
    return Recording(
        "pynetdicom-scu-pynetdicom-scp-store",
        "C-STORE of MR_small from a pynetdicom SCU to a pynetdicom SCP, then A-RELEASE",
        {RQ: pynetdicom_sender("SCU"), AC: pynetdicom_sender("SCP")},
        pdus,
    )


SCENARIOS: list[Callable[[], Recording]] = [
    echoscu_storescp,
    echoscu_storescp_abort,
    echoscu_storescp_refuse,
    storescu_storescp,
    storescu_storescp_required,
    storescu_storescp_maxpdu16k,
    storescu_storescp_abort_after,
    pynetdicom_scu_storescp,
    pynetdicom_scu_storescp_abort,
    echoscu_pynetdicom_scp,
    echoscu_pynetdicom_scp_wrong_called_aet,
    pynetdicom_scu_pynetdicom_scp_extneg,
    pynetdicom_scu_pynetdicom_scp_userid_response,
    pynetdicom_scu_pynetdicom_scp_store,
]


# --- describing and saving ---------------------------------------------------


def pdu_slug(pdu_type: int) -> str:
    """File name part for a PDU type, e.g. 'a-associate-rq'."""
    return PDU_NAMES.get(pdu_type, f"type-{pdu_type:02x}").lower()


def command_field(command: bytes) -> int | None:
    """(0000,0100) Command Field of an implicit VR little endian command set."""
    offset = 0
    while offset + 8 <= len(command):
        group, element = (
            int.from_bytes(command[offset : offset + 2], "little"),
            int.from_bytes(command[offset + 2 : offset + 4], "little"),
        )
        length = int.from_bytes(command[offset + 4 : offset + 8], "little")
        if (group, element) == (0x0000, 0x0100) and length == 2:
            return int.from_bytes(command[offset + 8 : offset + 10], "little")
        offset += 8 + length
    return None


def describe_pdvs(pdu: bytes) -> list[dict]:
    """Context ID, kind, last flag and length of each PDV in a P-DATA-TF PDU."""
    pdvs, offset = [], 6
    while offset + 6 <= len(pdu):
        length = int.from_bytes(pdu[offset : offset + 4], "big")
        context_id, header = pdu[offset + 4], pdu[offset + 5]
        pdv = {
            "context_id": context_id,
            "command": bool(header & 1),
            "last": bool(header & 2),
            "length": length,
        }
        if header & 1:
            field = command_field(pdu[offset + 6 : offset + 4 + length])
            if field is not None:
                pdv["dimse"] = DIMSE_NAMES.get(field, f"0x{field:04X}")
        pdvs.append(pdv)
        offset += 4 + length
    return pdvs


def kept_indices(pdus: list[tuple[str, bytes]]) -> list[int]:
    """Every non-P-DATA PDU, plus the first few P-DATA-TF of each direction."""
    budget = dict(P_DATA_KEPT)
    kept = []
    for index, (direction, pdu) in enumerate(pdus):
        if pdu[0] == P_DATA_TF:
            if budget[direction] == 0:
                continue
            budget[direction] -= 1
        kept.append(index)
    return kept


def fixture_entry(rec: Recording, index: int) -> dict:
    direction, pdu = rec.pdus[index]
    sender, receiver = rec.senders[direction], rec.senders[AC if direction == RQ else RQ]
    entry = {
        "file": f"{sender.peer}/{rec.scenario}-{index:02d}-{pdu_slug(pdu[0])}.bin",
        "scenario": rec.scenario,
        "index": index,
        "direction": direction,
        "sender": sender.program,
        "receiver": receiver.program,
        "pdu_type": pdu[0],
        "pdu_name": PDU_NAMES.get(pdu[0], "unknown"),
        "size": len(pdu),
    }
    if pdu[0] == P_DATA_TF:
        entry["pdvs"] = describe_pdvs(pdu)
    return entry


def scenario_entry(rec: Recording) -> dict:
    return {
        "description": rec.description,
        "requestor": rec.senders[RQ].program,
        "acceptor": rec.senders[AC].program,
        # [direction, PDU type, size] of every PDU, kept as a fixture or not.
        "conversation": [[d, p[0], len(p)] for d, p in rec.pdus],
    }


def remove_old_fixtures() -> None:
    """Delete the files the previous manifest listed (and nothing else)."""
    if not MANIFEST.exists():
        return
    for entry in json.loads(MANIFEST.read_text())["fixtures"]:
        (FIXTURES / entry["file"]).unlink(missing_ok=True)
    MANIFEST.unlink()


def save(recordings: list[Recording]) -> list[dict]:
    """Write the kept PDUs of every recording and the manifest; return the fixture entries."""
    remove_old_fixtures()
    fixtures = []
    for rec in recordings:
        for index in kept_indices(rec.pdus):
            entry = fixture_entry(rec, index)
            path = FIXTURES / entry["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rec.pdus[index][1])
            fixtures.append(entry)
    scenarios = {rec.scenario: scenario_entry(rec) for rec in recordings}
    MANIFEST.write_text(manifest_text(scenarios, fixtures))
    return fixtures


def manifest_text(scenarios: dict, fixtures: list[dict]) -> str:
    """MANIFEST.json with one line per scenario and per fixture, so re-recordings diff well."""
    about = "DICOM Upper Layer PDUs recorded from real peers over loopback; regenerate with: python tests/record_fixtures.py"
    scenario_lines = ",\n".join(
        f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in scenarios.items()
    )
    fixture_lines = ",\n".join(f"  {json.dumps(entry)}" for entry in fixtures)
    return (
        f'{{\n "about": {json.dumps(about)},\n'
        f' "scenarios": {{\n{scenario_lines}\n }},\n'
        f' "fixtures": [\n{fixture_lines}\n ]\n}}\n'
    )


def main() -> int:
    recordings = []
    for scenario in SCENARIOS:
        rec = scenario()
        types = " ".join(f"{d}:{p[0]}" for d, p in rec.pdus)
        print(f"{rec.scenario}: {types}")
        recordings.append(rec)
    fixtures = save(recordings)
    total = sum(entry["size"] for entry in fixtures)
    print(f"wrote {len(fixtures)} fixtures, {total} bytes, to {FIXTURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
