"""What the pipeline learns of a stored instance from its file and its path."""

from __future__ import annotations

import logging
import os

from hsscp.dataset_peek import PeekError, peek_elements
from hsscp.part10 import Part10Error, parse_file_meta
from hsscp.storage.local import PEEK_LIMIT, SERIES_INSTANCE_UID, STUDY_INSTANCE_UID

__all__ = ["layout_folders", "uids_of_file"]

log = logging.getLogger("hsscp.pipeline")

HEAD_READS = (16 * 1024, PEEK_LIMIT)  # bytes read of a stored file to find its study and series UIDs
_UID_TAGS = frozenset({STUDY_INSTANCE_UID, SERIES_INSTANCE_UID})


def uids_of_file(path: str) -> tuple[str, str]:
    """The study and series UIDs of a stored file, or ("", "") if it cannot tell.

    They come early in a data set: a short read finds them, a longer one the rest.
    """
    for length in HEAD_READS:
        try:
            with open(path, "rb") as fp:
                head = fp.read(length)
            meta = parse_file_meta(head)
            found = peek_elements(memoryview(head)[meta.dataset_offset :], meta.transfer_syntax,
                                  _UID_TAGS, complete=len(head) < length)
            return found.get(STUDY_INSTANCE_UID, ""), found.get(SERIES_INSTANCE_UID, "")
        except PeekError as exc:
            error: Exception = exc  # perhaps only too short a read: the next is longer
        except (OSError, Part10Error) as exc:
            error = exc
            break
    log.warning("cannot read the study and series of %s: %s", path, error)
    return "", ""


def layout_folders(folder: str, study: str, series: str) -> tuple[str, str]:
    """(series folder, study folder) of a file in ``folder``: the study layout's, else ``folder``."""
    parent, name = os.path.split(folder)
    if name == series and os.path.basename(parent) == study:
        return folder, parent
    return folder, folder
