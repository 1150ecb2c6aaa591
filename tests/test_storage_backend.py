"""The storage backend interface: the local backend implements it, and the deployment asks no more of a store."""

from __future__ import annotations

import ast
import errno
import inspect
import typing
from pathlib import Path

import pytest

from hsscp.storage import Storage, StorageBackend, StoreOutcome, StoreRequest, os_error_outcome
from hsscp.storage.backend import failure
from workers import arena, spool, storage_service, worker_main, writer_main

# The modules that store through a backend (the supervisor builds the local one).
CLIENTS = (arena, spool, storage_service, writer_main, worker_main)
PROTOCOL_METHODS = {name for name, value in vars(StorageBackend).items() if inspect.isfunction(value)} - {
    "__init__",
    "__subclasshook__",
}


def test_the_local_backend_satisfies_the_protocol(tmp_path: Path) -> None:
    assert {"temp_path", "meta_for", "store_segments", "store_spooled", "remove_temp_files"} == PROTOCOL_METHODS
    assert isinstance(Storage(tmp_path), StorageBackend)
    for method in PROTOCOL_METHODS:
        assert inspect.signature(getattr(Storage, method)) == inspect.signature(getattr(StorageBackend, method))


def test_something_without_the_methods_is_no_backend() -> None:
    class WritesOnly:
        def store_segments(self, request, segments):
            return StoreOutcome(0)

    assert not isinstance(WritesOnly(), StorageBackend)


def imported_from_storage(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hsscp.storage")
        for alias in node.names
    }


def storage_calls(module) -> set[str]:
    """Attributes used on anything named ``storage`` (``self.storage.x``, ``storage.x``)."""
    tree = ast.parse(Path(module.__file__).read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
            if name == "storage":
                used.add(node.attr)
    return used


@pytest.mark.parametrize("module", CLIENTS, ids=lambda module: module.__name__)
def test_clients_know_only_the_protocol(module) -> None:
    names = imported_from_storage(module)
    assert "Storage" not in names and "local" not in names
    assert storage_calls(module) <= PROTOCOL_METHODS


def test_clients_are_annotated_with_the_protocol() -> None:
    hints = [
        typing.get_type_hints(arena.StoreSink.__init__)["storage"],
        typing.get_type_hints(storage_service.StorageService.__init__)["storage"],
        typing.get_type_hints(writer_main.Writer.__init__)["storage"],
        typing.get_type_hints(writer_main.run_writer)["storage"],
        typing.get_type_hints(worker_main.WorkerContext)["storage"],
        typing.get_type_hints(spool.SpoolFile.__init__)["storage"],
    ]
    assert hints == [StorageBackend] * len(hints)


@pytest.mark.parametrize(
    ("code", "status", "comment"),
    [
        (errno.ENOSPC, 0xA700, "out of resources: ENOSPC"),
        (errno.EDQUOT, 0xA700, "out of resources: EDQUOT"),
        (errno.EMFILE, 0xA700, "out of resources: EMFILE"),
        (errno.EROFS, 0x0110, "cannot store the file: EROFS"),
        (errno.EIO, 0x0110, "cannot store the file: EIO"),
        (None, 0x0110, "cannot store the file: unknown error"),
    ],
)
def test_one_mapping_from_errno_to_status(code, status, comment) -> None:
    error = OSError(code, "message with /a/secret/path") if code else OSError("no errno")
    assert os_error_outcome(error) == StoreOutcome(status, error_comment=comment)


def test_failure_comments_fit_an_lo() -> None:
    assert failure(0xC000, "x" * 100).error_comment == "x" * 64
    request = StoreRequest("1.2", "1.2.3", "1.2.840.10008.1.2")
    assert request.spool_path is None
