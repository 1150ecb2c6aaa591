"""Command-line parsing shared by the ``hsscp`` subcommands, with DCMTK's habits in mind.

DCMTK spells flags with ``-`` and ``+`` (``+xa``, ``+B``, ``+sd``), so the
subcommands take both as prefixes; otherwise argparse reads ``+xa`` as the
PORT. An argument that does not convert (``PORT``) is reported only when
nothing else is wrong, so an unknown flag followed by its value is named as
the unknown flag, not as a bad port.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "PREFIX_CHARS",
    "CommandParser",
    "Deferred",
    "FlagTable",
    "Honoured",
    "Refused",
    "add_honoured",
    "add_refused",
    "deferred",
]

# (flag spellings, number of values, help text or refusal message)
FlagTable = list[tuple[tuple[str, ...], int, str]]

PREFIX_CHARS = "-+"


@dataclass(frozen=True, slots=True)
class Deferred:
    """A value that did not convert; its error is raised once the whole line is parsed."""

    message: str


def deferred(convert: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """A type function for ``name`` that returns a :class:`Deferred` instead of failing."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            return Deferred(f"argument {name}: invalid {convert.__name__} value: {text!r}")

    return parse


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that names unknown flags before it complains about values."""

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self._unrecognized(extras)
        for value in vars(namespace).values():
            if isinstance(value, Deferred):
                self.error(value.message)
        return namespace, extras

    def _unrecognized(self, extras: list[str]) -> NoReturn:
        flags = [arg for arg in extras if len(arg) > 1 and arg[0] in self.prefix_chars]
        hint = ""
        if flags:
            noun = "flags" if len(flags) > 1 else "flag"
            hint = f" (unknown {noun} {' '.join(flags)}: see {self.prog} --help)"
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


class Honoured(argparse.Action):
    """A DCMTK flag for what hsscp always does: accepted, and nothing to set."""

    def __init__(self, option_strings: Sequence[str], dest: str, nargs: int = 0, **kwargs: Any) -> None:
        kwargs["default"] = argparse.SUPPRESS  # sets nothing, so overrides nothing
        super().__init__(option_strings, argparse.SUPPRESS, nargs=nargs, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        pass


class Refused(argparse.Action):
    """A DCMTK flag hsscp cannot honour: a usage error saying what to do instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, message: str = "", nargs: int = 0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("help", argparse.SUPPRESS)
        kwargs["default"] = argparse.SUPPRESS
        super().__init__(option_strings, argparse.SUPPRESS, nargs=nargs, **kwargs)
        self.message = message

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        raise argparse.ArgumentError(self, self.message)


def add_honoured(group: Any, table: FlagTable) -> None:
    """Add each flag of ``table`` as accepted, with its help text."""
    for flags, nargs, help_text in table:
        group.add_argument(*flags, action=Honoured, nargs=nargs, help=help_text)


def add_refused(parser: argparse.ArgumentParser, table: FlagTable) -> None:
    """Add each flag of ``table`` as refused with its message (hidden from --help)."""
    for flags, nargs, message in table:
        parser.add_argument(*flags, action=Refused, nargs=nargs, message=message)
