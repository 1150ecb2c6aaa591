"""Storage of received data sets: the backend interface and the local file system backend.

:mod:`hsscp.storage.backend` holds the contract (:class:`StorageBackend`)
and the messages that cross processes; :mod:`hsscp.storage.local` the
backend that writes Part 10 files, with :mod:`hsscp.storage.content` (the
completeness check and the comparison of a data set with a stored copy) and
:mod:`hsscp.storage.install` (final names, by the duplicate policy).
"""

from hsscp.storage.backend import (
    DUPLICATE_SOP_INSTANCE,
    InstanceFact,
    StorageBackend,
    StoreOutcome,
    StoreRequest,
    failure,
    os_error_outcome,
)
from hsscp.storage.batch import StagingBackend, store_batch
from hsscp.storage.install import Duplicate, DuplicatePolicy
from hsscp.storage.local import (
    PEEK_LIMIT,
    TEMP_DIR_NAME,
    FsyncPolicy,
    Layout,
    Staged,
    Storage,
    write_all,
)

__all__ = [
    "DUPLICATE_SOP_INSTANCE",
    "PEEK_LIMIT",
    "TEMP_DIR_NAME",
    "Duplicate",
    "DuplicatePolicy",
    "FsyncPolicy",
    "InstanceFact",
    "Layout",
    "Storage",
    "Staged",
    "StagingBackend",
    "StorageBackend",
    "StoreOutcome",
    "StoreRequest",
    "failure",
    "os_error_outcome",
    "store_batch",
    "write_all",
]
