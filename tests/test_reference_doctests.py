"""Every ``>>>`` example of the AE API reference, run against hsscp.

The examples are pynetdicom's; with ``pynetdicom`` read as ``hsscp`` each must
print exactly what the reference shows. As doctest does per docstring, the
examples of one method share their globals (some reuse ``ae`` from the one
before).
"""

from __future__ import annotations

import doctest
import io
import re
from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "reference" / "ae-api.txt"

# A method or property heading starts a new section (the reference's docstrings).
_HEADING = re.compile(r"^(?:\S.*\[source\]|property \w+)$", re.MULTILINE)


def _sections(text: str) -> list[tuple[str, int, str]]:
    """(heading, line number, text) of each section with at least one example."""
    starts = [match.start() for match in _HEADING.finditer(text)]
    sections = []
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        body = text[start:end]
        if ">>>" in body:
            heading = body.splitlines()[0]
            sections.append((heading, text.count("\n", 0, start) + 1, body))
    return sections


def _doctest(heading: str, lineno: int, body: str) -> doctest.DocTest:
    test = doctest.DocTestParser().get_doctest(body, {}, heading, str(REFERENCE), lineno - 1)
    for example in test.examples:
        example.source = example.source.replace("pynetdicom", "hsscp")
    return test


SECTIONS = _sections(REFERENCE.read_text(encoding="utf-8"))


def test_the_reference_has_its_examples() -> None:
    headings = [heading.split("(")[0] for heading, _, _ in SECTIONS]
    assert headings == [
        "add_requested_context",
        "add_supported_context",
        "remove_requested_context",
        "remove_supported_context",
    ]
    counts = [len(_doctest(*section).examples) for section in SECTIONS]
    assert counts == [23, 25, 27, 27]
    # No example is lost between sections.
    assert sum(counts) == len(re.findall(r"^>>> ", REFERENCE.read_text(encoding="utf-8"), re.MULTILINE))


@pytest.mark.parametrize(("heading", "lineno", "body"), SECTIONS, ids=[s[0].split("(")[0] for s in SECTIONS])
def test_reference_examples(heading: str, lineno: int, body: str) -> None:
    test = _doctest(heading, lineno, body)
    report = io.StringIO()
    runner = doctest.DocTestRunner(verbose=False, optionflags=0)
    result = runner.run(test, out=report.write, clear_globs=True)
    assert result.attempted == len(test.examples)
    assert result.failed == 0, f"{result.failed} example(s) of {heading} failed:\n{report.getvalue()}"
