"""hsscp: a high-throughput DICOM Storage SCP/SCU with pynetdicom's AE API.

Switch ``from pynetdicom import AE`` to ``from hsscp import AE`` for
verification and storage.

The public names are loaded on first use, so importing one of the sans-IO
modules (``hsscp.engine``, ``hsscp.pdu``...) does not pull in pydicom.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (a module itself where the name is one)
_LAZY = {
    "ALL_TRANSFER_SYNTAXES": "hsscp.uid",
    "AE": "hsscp.ae",
    "ApplicationEntity": "hsscp.ae",
    "AllStoragePresentationContexts": "hsscp.presentation",
    "DEFAULT_TRANSFER_SYNTAXES": "hsscp.uid",
    "PresentationContext": "hsscp.presentation",
    "StoragePresentationContexts": "hsscp.presentation",
    "VerificationPresentationContexts": "hsscp.presentation",
    "build_context": "hsscp.presentation",
    "build_role": "hsscp.presentation",
    "evt": None,
    "register_uid": "hsscp.sop_class",
    "service_class": None,
    "sop_class": None,
    "status": None,
}

__all__ = [
    "AE",
    "ALL_TRANSFER_SYNTAXES",
    "AllStoragePresentationContexts",
    "ApplicationEntity",
    "DEFAULT_TRANSFER_SYNTAXES",
    "PresentationContext",
    "StoragePresentationContexts",
    "VerificationPresentationContexts",
    "__version__",
    "build_context",
    "build_role",
    "debug_logger",
    "evt",
    "register_uid",
    "service_class",
    "sop_class",
    "status",
]

# A library stays silent unless the application configures logging.
logging.getLogger("hsscp").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hsscp' has no attribute {name!r}")
    module = _LAZY[name]
    value = importlib.import_module(f"hsscp.{name}") if module is None else getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def debug_logger() -> None:
    """Log everything hsscp does to stderr, as pynetdicom's ``debug_logger``."""
    logger = logging.getLogger("hsscp")
    # One stream handler only, however often this is called.
    logger.handlers = [h for h in logger.handlers if isinstance(h, logging.NullHandler)]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
