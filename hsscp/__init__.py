"""hsscp: a high-throughput DICOM Storage SCP/SCU with pynetdicom's AE API.

Switch ``from pynetdicom import AE`` to ``from hsscp import AE`` for
verification and storage.
"""

import logging

from hsscp import evt, sop_class
from hsscp.ae import AE, ApplicationEntity
from hsscp.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    StoragePresentationContexts,
    VerificationPresentationContexts,
    build_context,
)

__version__ = "0.1.0"

__all__ = [
    "AE",
    "AllStoragePresentationContexts",
    "ApplicationEntity",
    "PresentationContext",
    "StoragePresentationContexts",
    "VerificationPresentationContexts",
    "__version__",
    "build_context",
    "debug_logger",
    "evt",
    "sop_class",
]

# A library stays silent unless the application configures logging.
logging.getLogger("hsscp").addHandler(logging.NullHandler())


def debug_logger() -> None:
    """Log everything hsscp does to stderr, as pynetdicom's ``debug_logger``."""
    logger = logging.getLogger("hsscp")
    # One stream handler only, however often this is called.
    logger.handlers = [h for h in logger.handlers if isinstance(h, logging.NullHandler)]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
