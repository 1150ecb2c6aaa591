"""The load generator's pure parts: pacing, the work queue, reports, context planning, payloads; TLS."""

from __future__ import annotations

import json
import shutil
import time
from array import array

import pytest

from hsscp.loadgen import cli, datasets, files, report
from hsscp.loadgen.files import EXPLICIT_VR_LE, IMPLICIT_VR_LE, ContextMap, Instance
from hsscp.loadgen.pacing import Pacer
from hsscp.loadgen.payload import Payloads
from hsscp.loadgen.work import WorkQueue
from hsscp.presentation import build_context
from tests.scp_fixtures import running_scp, sample_path

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
JPEG2000 = "1.2.840.10008.1.2.4.91"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_spaces_slots_evenly():
    clock = FakeClock()
    pacer = Pacer(100, clock=clock)
    waits = [pacer.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])


def test_pacer_does_not_burst_after_a_stall():
    clock = FakeClock()
    pacer = Pacer(1000, clock=clock)
    pacer.reserve()
    clock.now += 1.0  # a second without sending: 1000 slots missed
    due_now = 0
    while pacer.reserve() == 0.0:
        due_now += 1
    assert due_now <= 6  # at most BURST (5 ms) worth of catching up


def test_work_queue_shares_every_item_once_across_processes():
    shares = [WorkQueue(7, repeat=3, share=(i, 3)) for i in range(3)]
    items = []
    for queue in shares:
        while (item := queue.next()) is not None:
            items.append(item)
    assert sorted(items) == sorted((f, c) for f in range(7) for c in range(3))
    assert sum(queue.total for queue in shares) == 21


def test_work_queue_put_back_and_remaining():
    queue = WorkQueue(2, repeat=2)
    first = queue.next()
    queue.put_back(first)
    assert queue.remaining() == 4
    assert queue.next() == first
    assert queue.remaining() == 3


def test_work_queue_by_time_stops_at_the_deadline():
    clock = FakeClock()
    queue = WorkQueue(3, repeat=None, deadline=clock.now + 1, clock=clock)
    assert [queue.next() for _ in range(4)] == [(0, 0), (1, 0), (2, 0), (0, 1)]
    clock.now += 1
    assert queue.next() is None and queue.remaining() == 0


def test_percentiles_are_nearest_rank_in_milliseconds():
    p = report.percentiles(array("d", [i / 1000 for i in range(1, 101)]))
    assert (p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms) == (100, 50.0, 90.0, 99.0, 100.0)


def test_merge_adds_counts_and_keeps_every_latency():
    a, b = report.Stats(epoch=0.0), report.Stats(epoch=0.0)
    a.response(0x0000, 100, 0.001, 0.05)
    b.response(0x0000, 50, 0.002, 0.25)
    b.response(0xA700, 50, 0.003, 0.25)
    b.failure("aborted", 2)
    merged = report.merge([a.result(), b.result()])
    summary = report.summarize(merged, "C-STORE", 5, 0, 2)
    assert (summary.succeeded, summary.failed, summary.stored_bytes) == (2, 3, 150)
    assert summary.statuses == {"0x0000": 2, "0xA700": 1} and summary.failures == {"aborted": 2}
    assert summary.latency.count == 3
    assert merged.timeline[0] == [1, 100] and merged.timeline[2] == [1, 50]


def _instance(sop: str, syntax: str) -> Instance:
    return Instance("x.dcm", sop, "1.2.3", syntax, 132, 10)


def test_contexts_offer_each_files_own_syntax_alone_then_fallbacks():
    contexts = files.plan_contexts([_instance(CT, IMPLICIT_VR_LE), _instance(CT, JPEG2000), _instance(MR, EXPLICIT_VR_LE)])
    offered = [(str(pc.abstract_syntax), [str(ts) for ts in pc.transfer_syntax]) for pc in contexts]
    # A peer that accepts a file's own syntax must get that context, whatever it prefers:
    # so the own syntax is offered alone, and re-encodable files get a fallback after.
    assert offered == [
        (CT, [IMPLICIT_VR_LE]),
        (CT, [JPEG2000]),  # compressed data cannot go in another syntax undecoded: no fallback for it
        (MR, [EXPLICIT_VR_LE]),
        (CT, [EXPLICIT_VR_LE]),
        (MR, [IMPLICIT_VR_LE]),
    ]


def test_contexts_past_128_pairs_merge_per_sop_class_and_past_128_classes_refuse():
    many = [_instance(f"1.2.3.{i}", syntax) for i in range(70) for syntax in (IMPLICIT_VR_LE, EXPLICIT_VR_LE)]
    assert len(files.plan_contexts(many)) == 70
    with pytest.raises(ValueError, match="at most 128"):
        files.plan_contexts([_instance(f"1.2.3.{i}", EXPLICIT_VR_LE) for i in range(129)])


def _accepted(sop: str, syntax: str, context_id: int):
    context = build_context(sop, [syntax])
    context.context_id = context_id
    return context


def test_routes_prefer_the_own_syntax_and_fall_back_to_little_endian_only():
    routes = ContextMap([_accepted(CT, EXPLICIT_VR_LE, 1), _accepted(CT, IMPLICIT_VR_LE, 3)])
    assert routes.route(CT, IMPLICIT_VR_LE) == files.Route(3, IMPLICIT_VR_LE)
    only_explicit = ContextMap([_accepted(CT, EXPLICIT_VR_LE, 1)])
    assert only_explicit.route(CT, IMPLICIT_VR_LE) == files.Route(1, EXPLICIT_VR_LE)
    assert only_explicit.route(CT, JPEG2000) is None
    assert only_explicit.route(MR, EXPLICIT_VR_LE) is None


def test_scan_reads_the_dataset_uids_and_skips_what_is_not_part_10(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "plan.dcm"
    shutil.copy(sample_path("rtplan.dcm"), path)
    scan = files.scan([str(tmp_path)])
    assert [p for p, _ in scan.skipped] == [str(tmp_path / "notes.txt")]
    (instance,) = scan.instances
    # rtplan.dcm's meta group names another instance than its data set: the data set wins.
    assert instance.sop_instance_uid == "1.2.777.777.77.7.7777.7777.20030903150023"


def test_odd_deflated_data_set_is_padded_inside_its_last_chunk():
    instance = files.read_instance(sample_path("image_dfl.dcm"))
    assert instance.dataset_length % 2 == 1
    for preload in (False, True):
        payload = Payloads([instance], preload).get(0, 0, files.Route(1, instance.transfer_syntax))
        chunks = list(payload.chunks)
        assert len(chunks) == 1 and len(chunks[0]) == payload.nbytes == instance.dataset_length + 1


def test_patched_small_data_set_is_one_chunk_and_big_one_reuses_the_file(tmp_path):
    from hsscp.loadgen.uidpatch import UidMaker

    (tiny,) = datasets.generate("tiny", 1, str(tmp_path))
    instance = files.read_instance(tiny)
    payloads = Payloads([instance], preload=True, uid_maker=UidMaker("instance"))
    payloads.prepare()
    payload = payloads.get(0, 0, files.Route(1, instance.transfer_syntax))
    assert len(payload.chunks) == 1 and len(payload.chunks[0]) == payload.nbytes
    (ct,) = datasets.generate("ct", 1, str(tmp_path / "ct"))
    instance = files.read_instance(ct)
    payloads = Payloads([instance], preload=True, uid_maker=UidMaker("instance"))
    payloads.prepare()
    first, rest = payloads.get(0, 0, files.Route(1, instance.transfer_syntax)).chunks
    assert len(first) < 1024 and isinstance(rest, memoryview) and len(rest) > 500_000


def test_tls_with_the_peers_ca(tmp_path):
    from tests.tls_certs import make_pki

    pki = make_pki(tmp_path)
    (tiny,) = datasets.generate("tiny", 1, str(tmp_path / "data"))
    with running_scp(ssl_context=pki.server_context()) as (_, port, received):
        good = tmp_path / "good.json"
        code = cli.main(["storescu", "127.0.0.1", str(port), tiny, "-q", "--json", str(good),
                         "--tls-ca", str(pki.ca_cert), "-c", "2", "--repeat", "3"])
        assert code == 0 and json.loads(good.read_text())["succeeded"] == 3
        assert len(received.stores) == 3
        (other := tmp_path / "other").mkdir()
        bad = tmp_path / "bad.json"
        code = cli.main(["storescu", "127.0.0.1", str(port), tiny, "-q", "--json", str(bad),
                         "--tls-ca", str(make_pki(other).ca_cert)])
    assert code == cli.EXIT_FAILED
    assert json.loads(bad.read_text())["association_events"] == {"TLS handshake failed": 1}


def test_stats_clock_is_shared_by_processes():
    stats = report.Stats(epoch=time.monotonic() - 0.35)
    stats.response(0, 10, 0.001, time.monotonic())
    assert len(stats.timeline) == 4  # bucketed from the run's epoch, not the process's start
