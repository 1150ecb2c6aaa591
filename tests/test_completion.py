"""Series and study completion: one completion per quiet period, whatever the interleaving.

The tracker is pure, so the clock is a number the test moves by hand.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from hsscp.completion import Completion, CompletionKind, CompletionTracker
from hsscp.hooks import COMPLETION_PLACEHOLDERS, CommandTemplate

STUDY, SERIES = CompletionKind.STUDY, CompletionKind.SERIES
T0 = 1_700_000_000.0  # wall-clock seconds, as the server passes them


def arrive(tracker: CompletionTracker, study: str, series: str, now: float, **facts: str) -> None:
    tracker.note(study, series, f"/out/{study}", f"/out/{study}/{series}", now, **facts)


def sweep(tracker: CompletionTracker, start: float, end: float, step: float) -> list[Completion]:
    """What a timer calling due() every ``step`` seconds from ``start`` to ``end`` would get."""
    done = []
    now = start
    while now <= end:
        done += tracker.due(now)
        now += step
    return done


def test_interleaved_studies_complete_once_each_with_their_counts() -> None:
    # Each series sees a gap of up to 6 s between its instances, each study 2 s.
    tracker = CompletionTracker(study_timeout=9, series_timeout=7)
    # Two studies of two series each, instances interleaved one a second, as
    # two modalities sending at once over separate associations would.
    order = [("A", "A.1"), ("B", "B.1"), ("A", "A.2"), ("B", "B.1"), ("A", "A.1"), ("B", "B.2")]
    for second, (study, series) in enumerate(order * 2):
        arrive(tracker, study, series, T0 + second, calling_ae=f"SCU-{second}", peer="10.0.0.1")
        assert tracker.due(T0 + second) == []  # nothing goes quiet while both keep coming
    done = sweep(tracker, T0 + 12, T0 + 60, 0.5)

    assert Counter((c.kind, c.study_uid, c.series_uid) for c in done) == {
        (SERIES, "A", "A.1"): 1,
        (SERIES, "A", "A.2"): 1,
        (SERIES, "B", "B.1"): 1,
        (SERIES, "B", "B.2"): 1,
        (STUDY, "A", None): 1,
        (STUDY, "B", None): 1,
    }
    by_key = {(c.kind, c.series_uid or c.study_uid): c for c in done}
    study_a = by_key[STUDY, "A"]
    assert study_a.instances == 6 and study_a.folder == "/out/A"
    assert (study_a.first_arrival, study_a.last_arrival) == (T0 + 0, T0 + 10)
    assert study_a.facts == {"calling_ae": "SCU-10", "peer": "10.0.0.1"}  # the last instance's
    assert not study_a.early
    assert by_key[SERIES, "A.1"].instances == 4
    assert by_key[SERIES, "B.2"].folder == "/out/B/B.2"
    assert by_key[SERIES, "B.2"].instances == 2
    assert tracker.next_deadline() is None
    assert sweep(tracker, T0 + 60, T0 + 200, 10) == []


def test_a_period_completes_exactly_at_its_timeout_and_not_before() -> None:
    tracker = CompletionTracker(study_timeout=10, series_timeout=None)
    arrive(tracker, "S", "S.1", T0)
    arrive(tracker, "S", "S.1", T0 + 4)
    assert tracker.next_deadline() == T0 + 14
    assert tracker.due(T0 + 13.99) == []
    (done,) = tracker.due(T0 + 14)
    assert (done.kind, done.study_uid, done.series_uid, done.instances) == (STUDY, "S", None, 2)
    assert tracker.tracked(STUDY) == 0 and tracker.tracked(SERIES) == 0


def test_series_complete_before_their_study_in_one_due_call() -> None:
    tracker = CompletionTracker(study_timeout=2, series_timeout=2)
    arrive(tracker, "S", "S.1", T0)
    arrive(tracker, "S", "S.2", T0 + 1)
    kinds = [(c.kind, c.series_uid) for c in tracker.due(T0 + 100)]
    assert kinds == [(SERIES, "S.1"), (SERIES, "S.2"), (STUDY, None)]


def test_an_instance_after_completion_starts_a_new_period_counted_on_its_own() -> None:
    tracker = CompletionTracker(study_timeout=5, series_timeout=5)
    for second in range(3):
        arrive(tracker, "S", "S.1", T0 + second)
    first = tracker.due(T0 + 7)
    assert [(c.kind, c.instances) for c in first] == [(SERIES, 3), (STUDY, 3)]
    # A late instance: the study completes a second time, saying "one more".
    arrive(tracker, "S", "S.1", T0 + 30, calling_ae="LATE")
    assert tracker.due(T0 + 34) == []
    second = tracker.due(T0 + 35)
    assert [(c.kind, c.instances, c.first_arrival) for c in second] == [
        (SERIES, 1, T0 + 30),
        (STUDY, 1, T0 + 30),
    ]
    assert second[1].facts == {"calling_ae": "LATE"}


def test_next_deadline_follows_the_longest_quiet_period() -> None:
    tracker = CompletionTracker(study_timeout=10, series_timeout=3)
    assert tracker.next_deadline() is None
    arrive(tracker, "A", "A.1", T0)
    arrive(tracker, "B", "B.1", T0 + 2)
    assert tracker.next_deadline() == T0 + 3  # series A.1
    arrive(tracker, "A", "A.1", T0 + 2.5)
    assert tracker.next_deadline() == T0 + 5  # B.1 went quiet first now
    assert [c.series_uid for c in tracker.due(T0 + 5.5)] == ["B.1", "A.1"]
    assert tracker.next_deadline() == T0 + 12  # study B (A's last came at 2.5)


def test_a_clock_stepping_back_neither_reorders_nor_loses_arrivals() -> None:
    tracker = CompletionTracker(study_timeout=5, series_timeout=None)
    arrive(tracker, "A", "A.1", T0 + 10)
    arrive(tracker, "B", "B.1", T0 + 2)  # the clock stepped back 8 s: counts as T0 + 10
    assert tracker.due(T0 + 14) == []
    done = tracker.due(T0 + 15)
    assert [(c.study_uid, c.last_arrival) for c in done] == [("A", T0 + 10), ("B", T0 + 10)]


def test_completion_state_survives_a_restart_and_quiet_studies_complete_right_after() -> None:
    before = CompletionTracker(study_timeout=200, series_timeout=30)
    for second in range(5):
        arrive(before, "QUIET", "QUIET.1", T0 + second, calling_ae="CT1", called_ae="HSSCP")
    arrive(before, "BUSY", "BUSY.1", T0 + 100, calling_ae="MR1", peer="10.1.1.1")
    assert [c.series_uid for c in before.due(T0 + 100)] == ["QUIET.1"]
    saved = json.loads(json.dumps(before.snapshot()))  # what a state file would hold

    # The server was down from T0 + 101 to T0 + 500.
    after = CompletionTracker(study_timeout=200, series_timeout=30)
    after.restore(saved)
    assert after.next_deadline() == T0 + 130  # all went quiet during the downtime
    done = after.due(T0 + 500)
    assert [(c.kind, c.study_uid, c.instances) for c in done] == [
        (SERIES, "BUSY", 1),
        (STUDY, "QUIET", 5),
        (STUDY, "BUSY", 1),
    ]
    assert done[1].facts == {"calling_ae": "CT1", "called_ae": "HSSCP"}
    assert done[1].folder == "/out/QUIET"
    assert (done[1].first_arrival, done[1].last_arrival) == (T0, T0 + 4)
    assert after.next_deadline() is None


def test_restore_merges_with_what_arrived_since_start_up() -> None:
    before = CompletionTracker(study_timeout=60, series_timeout=None)
    arrive(before, "S", "S.1", T0)
    arrive(before, "S", "S.1", T0 + 1)
    after = CompletionTracker(study_timeout=60, series_timeout=None)
    arrive(after, "S", "S.2", T0 + 50, calling_ae="NEW")
    after.restore(before.snapshot())
    assert after.tracked(STUDY) == 1
    assert after.due(T0 + 109) == []
    (done,) = after.due(T0 + 110)
    assert (done.instances, done.first_arrival, done.last_arrival) == (3, T0, T0 + 50)
    assert done.facts == {"calling_ae": "NEW"}


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ({"version": 99, "periods": []}, "version 99"),
        ({"periods": []}, "version"),
        ({"version": 1, "periods": [{"kind": "patient"}]}, "kind"),
        ({"version": 1, "periods": [], "extra": 1}, "extra"),
        ("not a state", "completion state"),
    ],
)
def test_a_malformed_state_is_refused_clearly(state: object, why: str) -> None:
    tracker = CompletionTracker(study_timeout=60, series_timeout=60)
    with pytest.raises(ValueError, match=why):
        tracker.restore(state)
    assert tracker.tracked(STUDY) == 0


def test_the_cap_completes_the_longest_quiet_early_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = CompletionTracker(study_timeout=60, series_timeout=60, max_tracked=3)
    with caplog.at_level(logging.WARNING, logger="hsscp.completion"):
        for number in range(4):
            arrive(tracker, f"S{number}", f"S{number}.1", T0 + number)
        arrive(tracker, "S1", "S1.1", T0 + 4)  # a known one: no eviction
    assert tracker.tracked(STUDY) == 3 and tracker.tracked(SERIES) == 3
    assert tracker.next_deadline() <= T0 + 4  # the early ones are due now
    early = tracker.due(T0 + 4)
    assert [(c.kind, c.study_uid, c.early) for c in early] == [
        (SERIES, "S0", True),
        (STUDY, "S0", True),
    ]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("early" in m and "S0" in m for m in warnings)
    rest = tracker.due(T0 + 1000)
    assert sorted({c.study_uid for c in rest}) == ["S1", "S2", "S3"]
    assert not any(c.early for c in rest)


def test_early_completions_not_yet_delivered_survive_a_restart() -> None:
    tracker = CompletionTracker(study_timeout=60, series_timeout=None, max_tracked=1)
    arrive(tracker, "S0", "S0.1", T0)
    arrive(tracker, "S1", "S1.1", T0 + 1)
    restored = CompletionTracker(study_timeout=60, series_timeout=None, max_tracked=1)
    restored.restore(tracker.snapshot())
    done = restored.due(T0 + 1)
    assert [(c.study_uid, c.early) for c in done] == [("S0", True)]


def test_an_untracked_kind_is_neither_tracked_nor_restored() -> None:
    both = CompletionTracker(study_timeout=5, series_timeout=5)
    arrive(both, "S", "S.1", T0)
    study_only = CompletionTracker(study_timeout=5, series_timeout=None)
    study_only.restore(both.snapshot())
    arrive(study_only, "S", "S.2", T0 + 1)
    assert [(c.kind, c.instances) for c in study_only.due(T0 + 100)] == [(STUDY, 2)]


def test_a_completion_fills_an_end_of_study_hook() -> None:
    tracker = CompletionTracker(study_timeout=5, series_timeout=None)
    arrive(tracker, "1.2.3", "1.2.3.4", T0, calling_ae="A;B", called_ae="HSSCP", peer="10.0.0.9")
    (done,) = tracker.due(T0 + 5)
    command = CommandTemplate.parse(
        "/usr/local/bin/zip-study #p #a #c #r", allowed=COMPLETION_PLACEHOLDERS
    )
    argv = command.render({"folder": done.folder, **done.facts})
    assert argv == ["/usr/local/bin/zip-study", "/out/1.2.3", "A;B", "HSSCP", "10.0.0.9"]
