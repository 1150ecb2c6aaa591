"""Presentation contexts: printing, building and negotiation on both sides."""

from __future__ import annotations

import pickle
from itertools import product
from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from hsscp.presentation import (
    AllStoragePresentationContexts,
    ContextResult,
    PresentationContext,
    PresentationContextTuple,
    StoragePresentationContexts,
    VerificationPresentationContexts,
    build_context,
    build_role,
    negotiate_as_acceptor,
    negotiate_as_requestor,
)
from hsscp.sop_class import STORAGE_SOP_CLASSES, CTImageStorage, MRImageStorage, Verification
from hsscp.uid import ALL_TRANSFER_SYNTAXES

IMPLICIT, EXPLICIT, BIG = ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian


def context(
    abstract_syntax: str,
    transfer_syntax: list[str] | None = None,
    context_id: int | None = None,
    scu_role: bool | None = None,
    scp_role: bool | None = None,
) -> PresentationContext:
    cx = build_context(abstract_syntax, transfer_syntax)
    cx.context_id = context_id
    cx.scu_role = scu_role
    cx.scp_role = scp_role
    return cx


def outcome(cx: PresentationContext) -> tuple:
    return cx.context_id, cx.abstract_syntax, cx.transfer_syntax, cx.result, cx.as_scu, cx.as_scp


# -- PresentationContext ---------------------------------------------------


def test_prints_like_the_api_reference() -> None:
    assert str(build_context("1.2.840.10008.1.1")) == dedent("""\
        Abstract Syntax: Verification SOP Class
        Transfer Syntax(es):
            =Implicit VR Little Endian
            =Explicit VR Little Endian
            =Explicit VR Big Endian""")
    assert str(build_context(Verification, [IMPLICIT, BIG])) == dedent("""\
        Abstract Syntax: Verification SOP Class
        Transfer Syntax(es):
            =Implicit VR Little Endian
            =Explicit VR Big Endian""")


def test_prints_id_result_and_role_once_negotiated() -> None:
    proposed = [context(CTImageStorage, [EXPLICIT], context_id=3)]
    (accepted,), _ = negotiate_as_acceptor(proposed, [build_context(CTImageStorage)])
    assert str(accepted) == dedent("""\
        ID: 3
        Abstract Syntax: CT Image Storage
        Transfer Syntax(es):
            =Explicit VR Little Endian
        Result: Accepted
        Role: SCP only""")
    assert str(PresentationContext()) == "Transfer Syntax(es):\n    (none)"


def test_duplicate_transfer_syntaxes_are_ignored() -> None:
    cx = build_context(CTImageStorage, [IMPLICIT, EXPLICIT, IMPLICIT])
    cx.add_transfer_syntax(EXPLICIT)
    cx.add_transfer_syntax(b"1.2.840.10008.1.2\x00")
    cx.add_transfer_syntax(None)
    cx.add_transfer_syntax("")
    assert cx.transfer_syntax == [IMPLICIT, EXPLICIT]


def test_uids_lose_pdu_padding() -> None:
    cx = PresentationContext()
    cx.abstract_syntax = b"1.2.840.10008.1.1\x00"
    assert cx.abstract_syntax == Verification
    cx.abstract_syntax = "1.2.840.10008.1.1 "
    assert cx.abstract_syntax == Verification
    cx.abstract_syntax = CTImageStorage
    assert cx.abstract_syntax is CTImageStorage


@pytest.mark.parametrize("value", ["", "\x00", "1." + "2" * 63])
def test_bad_abstract_syntax_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        PresentationContext().abstract_syntax = value


@pytest.mark.parametrize("value", [0, 2, 256, -1])
def test_context_id_must_be_odd_1_to_255(value: int) -> None:
    with pytest.raises(ValueError):
        PresentationContext().context_id = value


def test_field_types_are_checked() -> None:
    cx = PresentationContext()
    with pytest.raises(TypeError):
        cx.scu_role = 1  # type: ignore[assignment]
    with pytest.raises(TypeError):
        cx.transfer_syntax = IMPLICIT  # type: ignore[assignment]
    with pytest.raises(TypeError):
        cx.abstract_syntax = 1.2  # type: ignore[assignment]


def test_equality_is_id_abstract_syntax_and_transfer_syntaxes() -> None:
    a = context(CTImageStorage, [IMPLICIT], context_id=1)
    b = context(CTImageStorage, [IMPLICIT], context_id=1, scu_role=True, scp_role=False)
    assert a == b and hash(a) == hash(b)
    assert a != context(CTImageStorage, [IMPLICIT], context_id=3)
    assert a != context(MRImageStorage, [IMPLICIT], context_id=1)
    assert a != context(CTImageStorage, [IMPLICIT, EXPLICIT], context_id=1)
    assert pickle.loads(pickle.dumps(a)) == a


def test_as_tuple_and_status() -> None:
    (accepted,), _ = negotiate_as_acceptor(
        [context(CTImageStorage, [IMPLICIT], context_id=1)], [build_context(CTImageStorage)]
    )
    assert accepted.as_tuple == PresentationContextTuple(1, CTImageStorage, IMPLICIT)
    assert accepted.status == "Accepted"
    assert PresentationContext().status == "Pending"


# -- Pre-built contexts ----------------------------------------------------


def test_prebuilt_lists() -> None:
    assert [cx.abstract_syntax for cx in VerificationPresentationContexts] == [Verification]
    assert len(StoragePresentationContexts) == 120
    storage = [cx.abstract_syntax for cx in StoragePresentationContexts]
    assert len(set(storage)) == 120
    assert {CTImageStorage, MRImageStorage, "1.2.840.10008.5.1.4.1.1.481.2"} <= set(storage)
    assert [cx.abstract_syntax for cx in AllStoragePresentationContexts] == list(
        STORAGE_SOP_CLASSES
    )


def test_preset_lists_are_pynetdicoms() -> None:
    import pynetdicom.presentation as theirs

    # The same 120 classes in the same order, so a pynetdicom user's contexts are the same.
    assert [str(cx.abstract_syntax) for cx in StoragePresentationContexts] == [
        str(cx.abstract_syntax) for cx in theirs.StoragePresentationContexts
    ]
    ours = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
    assert {str(cx.abstract_syntax) for cx in theirs.AllStoragePresentationContexts} <= ours
    # Newer than the installed pydicom's dictionary, but storage classes all the same.
    newer = {"1.2.840.10008.5.1.4.1.1.66.7", "1.2.840.10008.5.1.4.1.1.66.8",
             "1.2.840.10008.5.1.4.1.1.9.100.1", "1.2.840.10008.5.1.4.1.1.9.100.2"}
    assert newer <= ours
    assert [str(cx.abstract_syntax) for cx in VerificationPresentationContexts] == [
        str(cx.abstract_syntax) for cx in theirs.VerificationPresentationContexts
    ]


def test_a_context_for_every_file_storage_presentation_contexts_names() -> None:
    # The report that started this: a Digital X-Ray "For Processing" file found no context.
    storage = {cx.abstract_syntax for cx in StoragePresentationContexts}
    assert "1.2.840.10008.5.1.4.1.1.1.1.1" in storage
    assert all(cx.transfer_syntax == [IMPLICIT, EXPLICIT, BIG] for cx in StoragePresentationContexts)


def test_build_role_is_pynetdicoms_role_item() -> None:
    from pynetdicom.presentation import build_role as their_build_role

    for scu, scp in product((False, True), repeat=2):
        ours, theirs = build_role(CTImageStorage, scu, scp), their_build_role(CTImageStorage, scu, scp)
        assert (ours.sop_class_uid, ours.scu_role, ours.scp_role) == (
            theirs.sop_class_uid, theirs.scu_role, theirs.scp_role
        )
        assert type(ours.scu_role) is bool and isinstance(ours.sop_class_uid, type(theirs.sop_class_uid))
    assert build_role(CTImageStorage) == build_role(CTImageStorage, False, False)
    with pytest.raises(TypeError):
        build_role(CTImageStorage, scu_role=1)


# -- Acceptor --------------------------------------------------------------


def test_accepts_a_supported_context() -> None:
    results, replies = negotiate_as_acceptor(
        [context(CTImageStorage, [EXPLICIT, IMPLICIT], context_id=1)],
        [build_context(CTImageStorage)],
    )
    assert [outcome(cx) for cx in results] == [
        (1, CTImageStorage, [IMPLICIT], ContextResult.ACCEPTANCE, False, True)
    ]
    assert replies == []


def test_rejects_an_unsupported_abstract_syntax_echoing_the_first_transfer_syntax() -> None:
    results, _ = negotiate_as_acceptor(
        [context(MRImageStorage, [EXPLICIT, IMPLICIT], context_id=1)],
        [build_context(CTImageStorage)],
    )
    assert [outcome(cx) for cx in results] == [
        (1, MRImageStorage, [EXPLICIT], ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, False, False)
    ]


def test_rejects_unsupported_transfer_syntaxes() -> None:
    results, _ = negotiate_as_acceptor(
        [context(CTImageStorage, [JPEGBaseline8Bit, RLELossless], context_id=5)],
        [build_context(CTImageStorage)],
    )
    assert [outcome(cx) for cx in results] == [
        (5, CTImageStorage, [JPEGBaseline8Bit], ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
         False, False)
    ]


def test_acceptors_order_wins_by_default_like_pynetdicom() -> None:
    proposed = [context(CTImageStorage, [JPEG2000Lossless, EXPLICIT, IMPLICIT], context_id=1)]
    supported = [build_context(CTImageStorage, [IMPLICIT, EXPLICIT, JPEG2000Lossless])]
    (result,), _ = negotiate_as_acceptor(proposed, supported)
    assert result.transfer_syntax == [IMPLICIT]


def test_first_proposed_wins_when_asked() -> None:
    proposed = [context(CTImageStorage, [RLELossless, JPEG2000Lossless, EXPLICIT], context_id=1)]
    supported = [build_context(CTImageStorage, [IMPLICIT, EXPLICIT, JPEG2000Lossless])]
    (result,), _ = negotiate_as_acceptor(proposed, supported, prefer_proposed=True)
    assert result.transfer_syntax == [JPEG2000Lossless]


def test_results_are_sorted_by_context_id_and_keep_repeated_abstract_syntaxes() -> None:
    proposed = [
        context(CTImageStorage, [EXPLICIT], context_id=5),
        context(CTImageStorage, [IMPLICIT], context_id=1),
        context(MRImageStorage, [IMPLICIT], context_id=3),
    ]
    results, _ = negotiate_as_acceptor(proposed, [build_context(CTImageStorage)])
    assert [(cx.context_id, cx.result) for cx in results] == [(1, 0), (3, 3), (5, 0)]


def test_a_full_128_context_proposal() -> None:
    classes = list(STORAGE_SOP_CLASSES[:127]) + ["1.2.3.4.5"]
    proposed = [
        context(uid, [JPEGBaseline8Bit, EXPLICIT], context_id=2 * index + 1)
        for index, uid in enumerate(classes)
    ]
    supported = [build_context(uid, ALL_TRANSFER_SYNTAXES) for uid in STORAGE_SOP_CLASSES]
    results, replies = negotiate_as_acceptor(proposed, supported)
    assert len(results) == 128 and replies == []
    assert all(cx.result == 0 and cx.transfer_syntax == [EXPLICIT] for cx in results[:127])
    assert results[127].result == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert [cx.context_id for cx in results] == list(range(1, 257, 2))


# Rows: requestor's proposed (scu, scp) or None for no Role Selection item.
# Columns: the supported context's (scu_role, scp_role).
# Cells: (result, acceptor as_scu, acceptor as_scp, role reply or None).
DEFAULT = (0, False, True, None)
ALLOWED = [(True, True), (True, False), (False, True), (False, False)]
ROLE_TABLE = {
    (True, True): {
        (True, True): (0, True, True, (True, True)),
        (True, False): (0, False, True, (True, False)),
        (False, True): (0, True, False, (False, True)),
        (False, False): (1, False, False, None),
    },
    (True, False): {
        (True, True): (0, False, True, (True, False)),
        (True, False): (0, False, True, (True, False)),
        (False, True): (1, False, False, None),
        (False, False): (1, False, False, None),
    },
    (False, True): {
        (True, True): (0, True, False, (False, True)),
        (True, False): (1, False, False, None),
        (False, True): (0, True, False, (False, True)),
        (False, False): (1, False, False, None),
    },
    (False, False): {allowed: (1, False, False, None) for allowed in ALLOWED},
}
ROLE_CASES = [
    (proposal, allowed, ROLE_TABLE[proposal][allowed])
    for proposal, allowed in product(ROLE_TABLE, ALLOWED)
]
# An acceptor leaving either role None, or a requestor proposing nothing, means defaults.
ROLE_CASES += [
    (proposal, allowed, DEFAULT)
    for proposal, allowed in product(
        [None, *ROLE_TABLE],
        [(None, None), (None, True), (None, False), (True, None), (False, None)],
    )
]
ROLE_CASES += [(None, allowed, DEFAULT) for allowed in ALLOWED]


@pytest.mark.parametrize(("proposal", "allowed", "expected"), ROLE_CASES)
def test_role_selection_as_acceptor(
    proposal: tuple[bool, bool] | None, allowed: tuple[bool | None, bool | None], expected: tuple
) -> None:
    supported = [context(CTImageStorage, scu_role=allowed[0], scp_role=allowed[1])]
    roles = {CTImageStorage: proposal} if proposal is not None else None
    (result,), replies = negotiate_as_acceptor(
        [context(CTImageStorage, [IMPLICIT], context_id=1)], supported, roles
    )
    result_code, as_scu, as_scp, reply = expected
    assert (result.result, result.as_scu, result.as_scp) == (result_code, as_scu, as_scp)
    assert replies == ([] if reply is None else [(CTImageStorage, *reply)])


def test_no_role_reply_for_a_rejected_context() -> None:
    supported = [context(CTImageStorage, [EXPLICIT], scu_role=True, scp_role=True)]
    _, replies = negotiate_as_acceptor(
        [context(CTImageStorage, [IMPLICIT], context_id=1)],
        supported,
        {CTImageStorage: (True, True)},
    )
    assert replies == []


# -- Requestor -------------------------------------------------------------


def test_requestor_maps_results_back() -> None:
    requested = [
        context(CTImageStorage, [IMPLICIT, EXPLICIT], context_id=1),
        context(MRImageStorage, [EXPLICIT], context_id=3),
        context(Verification, [IMPLICIT], context_id=5),
    ]
    results = [(3, 4, b"1.2.840.10008.1.2.1\x00"), (1, 0, EXPLICIT)]
    negotiated = negotiate_as_requestor(requested, results, None)
    assert [outcome(cx) for cx in negotiated] == [
        (1, CTImageStorage, [EXPLICIT], 0, True, False),
        (3, MRImageStorage, [EXPLICIT], 4, True, False),
        (5, Verification, [IMPLICIT], ContextResult.PROVIDER_REJECTION, False, False),
    ]


def test_requestor_needs_contexts() -> None:
    with pytest.raises(ValueError):
        negotiate_as_requestor([], [], None)


@pytest.mark.parametrize(
    ("proposal", "reply", "expected"),
    [
        ((None, None), None, (True, False)),
        ((None, None), (True, True), (True, False)),
        ((True, True), None, (True, False)),
        ((True, True), (True, True), (True, True)),
        ((True, True), (False, True), (False, True)),
        ((True, True), (True, False), (True, False)),
        ((True, True), (False, False), (False, False)),
        ((True, False), (True, True), (True, False)),  # an unproposed role stays refused
        ((False, True), (True, True), (False, True)),
        ((False, False), (True, True), (False, False)),
    ],
)
def test_role_selection_as_requestor(
    proposal: tuple[bool | None, bool | None],
    reply: tuple[bool, bool] | None,
    expected: tuple[bool, bool],
) -> None:
    requested = [context(CTImageStorage, [IMPLICIT], 1, *proposal)]
    replies = {CTImageStorage: reply} if reply is not None else None
    (negotiated,) = negotiate_as_requestor(requested, [(1, 0, IMPLICIT)], replies)
    assert (negotiated.as_scu, negotiated.as_scp) == expected


# -- Cross-check against pynetdicom ---------------------------------------

SYNTAXES = [IMPLICIT, EXPLICIT, BIG, DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit]
CLASSES = [CTImageStorage, MRImageStorage, Verification, "1.2.3.4"]
roles_st = st.tuples(st.booleans(), st.booleans())
allowed_st = st.tuples(st.none() | st.booleans(), st.none() | st.booleans())
syntaxes_st = st.lists(st.sampled_from(SYNTAXES), min_size=1, max_size=5, unique=True)


def _pynetdicom_context(cx: PresentationContext):
    import pynetdicom.presentation as presentation
    theirs = presentation.PresentationContext()
    theirs.context_id = cx.context_id
    theirs.abstract_syntax = cx.abstract_syntax
    theirs.transfer_syntax = list(cx.transfer_syntax)
    theirs.scu_role = cx.scu_role
    theirs.scp_role = cx.scp_role
    return theirs


@st.composite
def acceptor_cases(draw):
    classes = draw(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=8))
    proposed = [
        context(uid, draw(syntaxes_st), context_id=2 * index + 1)
        for index, uid in enumerate(classes)
    ]
    supported = []
    for uid in draw(st.lists(st.sampled_from(CLASSES), min_size=1, unique=True)):
        scu_role, scp_role = draw(allowed_st)
        supported.append(context(uid, draw(syntaxes_st), scu_role=scu_role, scp_role=scp_role))
    roles = draw(st.dictionaries(st.sampled_from(CLASSES), roles_st))
    return proposed, supported, roles


@settings(max_examples=300, deadline=None)
@given(acceptor_cases())
def test_acceptor_matches_pynetdicom(case) -> None:
    import pynetdicom.presentation as presentation
    proposed, supported, roles = case
    theirs, their_replies = presentation.negotiate_as_acceptor(
        [_pynetdicom_context(cx) for cx in proposed],
        [_pynetdicom_context(cx) for cx in supported],
        roles,
    )
    ours, our_replies = negotiate_as_acceptor(proposed, supported, roles)
    assert [outcome(cx) for cx in ours] == [outcome(cx) for cx in theirs]
    assert [str(cx) for cx in ours] == [str(cx) for cx in theirs]
    assert our_replies == [
        (reply.sop_class_uid, reply.scu_role, reply.scp_role) for reply in their_replies
    ]


@st.composite
def requestor_cases(draw):
    requested = []
    for index, uid in enumerate(draw(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=8))):
        proposal = draw(st.none() | roles_st) or (None, None)
        requested.append(context(uid, draw(syntaxes_st), 2 * index + 1, *proposal))
    answers = [
        (cx.context_id, draw(st.integers(0, 4)), draw(st.sampled_from(SYNTAXES)))
        for cx in requested
        if draw(st.booleans())
    ]
    replies = draw(st.dictionaries(st.sampled_from(CLASSES), roles_st))
    return requested, answers, replies


@settings(max_examples=300, deadline=None)
@given(requestor_cases())
def test_requestor_matches_pynetdicom(case) -> None:
    import pynetdicom.presentation as presentation
    requested, answers, replies = case
    their_answers = []
    for context_id, result, syntax in answers:
        answer = presentation.PresentationContext()
        answer.context_id, answer.result, answer.transfer_syntax = context_id, result, [syntax]
        their_answers.append(answer)
    theirs = presentation.negotiate_as_requestor(
        [_pynetdicom_context(cx) for cx in requested], their_answers, replies
    )
    ours = negotiate_as_requestor(requested, answers, replies)
    assert [outcome(cx) for cx in ours] == [outcome(cx) for cx in theirs]
