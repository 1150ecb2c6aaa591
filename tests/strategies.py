"""Hypothesis strategies that build every PDU and item the codec knows."""

from __future__ import annotations

from hypothesis import strategies as st

from hsscp import items, pdu

uids = st.from_regex(r"\A[12](\.[1-9][0-9]{0,8}){1,6}\Z", fullmatch=True)
ae_titles = st.from_regex(r"\A[A-Z0-9_\-]{1,16}\Z", fullmatch=True)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
blobs = st.binary(max_size=64)

sub_items = st.one_of(
    st.builds(items.MaximumLength, st.integers(0, 0xFFFFFFFF)),
    st.builds(items.ImplementationClassUID, uids),
    st.builds(items.ImplementationVersionName, ae_titles),
    st.builds(items.AsyncOperationsWindow, u16, u16),
    st.builds(items.RoleSelection, uids, st.integers(0, 1), st.integers(0, 1)),
    st.builds(items.SOPClassExtendedNegotiation, uids, blobs),
    st.builds(items.SOPClassCommonExtendedNegotiation, uids, uids, st.lists(uids, max_size=3), u8),
    st.builds(items.UserIdentityRQ, st.integers(1, 5), st.booleans(), blobs, blobs),
    st.builds(items.UserIdentityAC, blobs),
    st.builds(items.UnknownSubItem, st.integers(0x5A, 0xFF), blobs),
)
user_information = st.builds(items.UserInformation, st.lists(sub_items, max_size=6))

context_rq = st.builds(
    items.PresentationContextRQ, st.integers(1, 255), uids, st.lists(uids, min_size=1, max_size=4)
)
context_ac = st.builds(items.PresentationContextAC, st.integers(1, 255), st.integers(0, 4), uids)

associate_rq = st.builds(
    pdu.AAssociateRQ,
    called_ae_title=ae_titles,
    calling_ae_title=ae_titles,
    application_context=uids,
    presentation_contexts=st.lists(context_rq, max_size=5),
    user_information=user_information,
    protocol_version=u16,
)
associate_ac = st.builds(
    pdu.AAssociateAC,
    called_ae_title=ae_titles,
    calling_ae_title=ae_titles,
    application_context=uids,
    presentation_contexts=st.lists(context_ac, max_size=5),
    user_information=user_information,
    protocol_version=u16,
)
pdvs = st.builds(pdu.PDV, st.integers(1, 255), st.integers(0, 3), st.binary(max_size=300))

pdus = st.one_of(
    associate_rq,
    associate_ac,
    st.builds(pdu.AAssociateRJ, st.integers(1, 2), st.integers(1, 3), u8),
    st.builds(pdu.PDataTF, st.lists(pdvs, min_size=1, max_size=4)),
    st.builds(pdu.AReleaseRQ),
    st.builds(pdu.AReleaseRP),
    st.builds(pdu.AAbort, st.sampled_from([0, 2]), st.integers(0, 6)),
)
