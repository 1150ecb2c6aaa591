"""One error family: every exception class of the library is an HsscpError; input errors stay ValueErrors."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import hsscp
import workers
from hsscp.config import ConfigError
from hsscp.dataset_peek import PeekError
from hsscp.errors import HsscpError, InvalidInput
from hsscp.loadgen.payload import PayloadError
from hsscp.loadgen.uidpatch import PatchError
from hsscp.part10 import Part10Error


def library_modules():
    for package in (hsscp, workers):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):  # running it is all such a module does
                yield importlib.import_module(info.name)


def exception_classes() -> list[type[BaseException]]:
    return sorted(
        {
            cls
            for module in library_modules()
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__
        },
        key=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
    )


def test_every_exception_class_of_the_library_is_an_hsscp_error() -> None:
    classes = exception_classes()
    assert len(classes) >= 10  # the walk really found the library's classes
    strays = [f"{cls.__module__}.{cls.__qualname__}" for cls in classes if not issubclass(cls, HsscpError)]
    assert strays == []


@pytest.mark.parametrize("error", [ConfigError, PeekError, Part10Error, PatchError, PayloadError])
def test_input_errors_keep_value_error_as_a_base(error: type[Exception]) -> None:
    assert issubclass(error, InvalidInput) and issubclass(error, ValueError)
    with pytest.raises(ValueError, match="bad"):  # what callers wrote before the family existed
        raise error("bad")
