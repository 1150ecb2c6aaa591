"""The presentation contexts an SCU proposes for the files it will send, so that they go as they are.

An acceptor picks one transfer syntax per context, by its own preference
(DCMTK's ``storescp`` prefers Explicit VR Little Endian): a context
offering a file's syntax among others may come back with another one, and
the file would have to be converted. So each (SOP class, transfer syntax)
of the files gets a context offering that syntax alone, and a SOP class
whose files could be re-encoded (the uncompressed little endian syntaxes
and deflated, as :func:`hsscp.scu_datasets.choose_context` allows) gets one
fallback context offering what they could become. The SCU uses a fallback
only when the peer accepted no context with the file's own syntax.

``AE.associate(contexts=plan_contexts(...))`` and the load generator both
propose what this module plans.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from hsscp.acse import MAX_REQUESTED_CONTEXTS
from hsscp.part10 import read_file_meta
from hsscp.presentation import PresentationContext, build_context
from hsscp.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

__all__ = ["FALLBACK_SYNTAXES", "contexts_for_files", "plan_contexts"]

# What a re-encodable file may be sent in when its own syntax is refused, in order of preference.
FALLBACK_SYNTAXES = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
_REENCODABLE = frozenset((*FALLBACK_SYNTAXES, str(DeflatedExplicitVRLittleEndian)))


def plan_contexts(
    pairs: Iterable[tuple[str, str]], limit: int = MAX_REQUESTED_CONTEXTS
) -> list[PresentationContext]:
    """The contexts to propose for files of these (SOP class UID, transfer syntax UID) pairs.

    One context per pair with that syntax alone (by SOP class, classes and
    syntaxes in the order first seen), then one fallback context per SOP
    class with re-encodable files,
    offering the fallback syntaxes none of its own contexts offers. Past
    ``limit`` contexts the fallbacks go first; past ``limit`` pairs, one
    context per SOP class offers its files' syntaxes (then the fallbacks).
    More SOP classes than ``limit`` raise ValueError: they cannot go on one
    association.
    """
    by_class: dict[str, list[str]] = {}
    for sop_class, syntax in dict.fromkeys((str(c), str(s)) for c, s in pairs):
        by_class.setdefault(sop_class, []).append(syntax)
    if len(by_class) > limit:
        raise ValueError(
            f"the files hold {len(by_class)} SOP classes; one association can propose "
            f"at most {limit}: send them in smaller groups"
        )
    fallbacks = {sop_class: _fallback(syntaxes) for sop_class, syntaxes in by_class.items()}
    fallbacks = {sop_class: syntaxes for sop_class, syntaxes in fallbacks.items() if syntaxes}
    pairs_count = sum(len(syntaxes) for syntaxes in by_class.values())
    if pairs_count > limit:
        # Too many for one context each: each class offers all it needs in one.
        return [build_context(c, [*s, *fallbacks.get(c, [])]) for c, s in by_class.items()]
    own = [build_context(c, syntax) for c, syntaxes in by_class.items() for syntax in syntaxes]
    if pairs_count + len(fallbacks) > limit:
        return own
    return own + [build_context(c, syntaxes) for c, syntaxes in fallbacks.items()]


def _fallback(syntaxes: list[str]) -> list[str]:
    """The fallback syntaxes a class's files may need: none if none is re-encodable."""
    if _REENCODABLE.isdisjoint(syntaxes):
        return []
    return [syntax for syntax in FALLBACK_SYNTAXES if syntax not in syntaxes]


def contexts_for_files(paths: Iterable[str | os.PathLike]) -> list[PresentationContext]:
    """:func:`plan_contexts` for these Part 10 files (their File Meta Information is read)."""
    pairs = []
    for path in paths:
        with open(path, "rb") as stream:
            meta = read_file_meta(stream)
        pairs.append((meta.sop_class_uid, meta.transfer_syntax))
    return plan_contexts(pairs)
