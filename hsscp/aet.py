"""AE titles: validation and the two forms users pass them in (bytes and str).

PS3.5 table 6.2-1 (AE): at most 16 characters of the default repertoire,
no backslash or control characters; leading and trailing spaces are not
significant, so a title of only spaces is no title.
"""

from __future__ import annotations

AE_TITLE_LENGTH = 16


def normalize_ae_title(value: str | bytes) -> str:
    """Validate an AE title given as str or bytes; return it stripped, as str.

    Raises ValueError (or TypeError for other types) with a message saying why.
    """
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"AE title {value!r} is not ASCII") from None
    elif not isinstance(value, str):
        raise TypeError(f"AE title must be str or bytes, not {type(value).__name__}")
    stripped = value.strip(" ")
    if not stripped:
        raise ValueError("AE title must not be empty or only spaces")
    if len(stripped) > AE_TITLE_LENGTH:
        raise ValueError(f"AE title {stripped!r} is longer than {AE_TITLE_LENGTH} characters")
    if not stripped.isascii():
        raise ValueError(f"AE title {stripped!r} is not ASCII (the DICOM default character repertoire)")
    if "\\" in stripped:
        raise ValueError(f"AE title {stripped!r} contains a backslash")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in stripped):
        raise ValueError(f"AE title {stripped!r} contains control characters")
    return stripped


def in_form_of(title: str, example: str | bytes) -> str | bytes:
    """Give ``title`` back in the form the user used: bytes padded to 16, or str."""
    if isinstance(example, bytes | bytearray):
        return title.encode("ascii").ljust(AE_TITLE_LENGTH)
    return title


def safe_for_log(value: str | bytes) -> str:
    """An AE title from the wire as a log-safe repr: no newlines or escapes reach a log."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    return repr(value.strip(" \0"))
