"""The one reader for user data files: CSV datasets (SFT rows, writer rows, memory pairs) and
plain text lines (combination lines, prompts).

What users hand us comes from Excel or a text editor, so each common way a CSV goes wrong is one
clear OhloraError naming the file and line: a missing or unreadable file, another encoding than
UTF-8 (Excel's Korean default is cp949), a UTF-16 "Unicode text" export, NUL bytes, a quote that
is never closed (it would swallow the rest of the file), rows with a wrong number of fields. A
UTF-8 BOM (Excel's "CSV UTF-8") is accepted.
"""

from __future__ import annotations

import codecs
import csv
from pathlib import Path
from typing import Iterator

from ohlora.errors import OhloraError

SAVE_AS_UTF8 = 'save it as UTF-8 (in Excel: "CSV UTF-8 (Comma delimited)")'


def read_csv(path: Path, required: tuple[str, ...] | set[str], what: str = "CSV file") -> list[tuple[int, dict]]:
    """(line where the record starts, {column: value}) for every non-blank record, in order.

    Raises OhloraError when the file cannot be read as a CSV holding the `required` columns.
    """
    return list(iter_csv(path, required, what))


def iter_csv(path: Path, required: tuple[str, ...] | set[str], what: str = "CSV file") -> Iterator[tuple[int, dict]]:
    """read_csv() one record at a time (for files too large to hold)."""
    path = Path(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise OhloraError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise OhloraError(f"{what} {path} is a directory, not a file") from None
    except OSError as e:  # e.g. NotADirectoryError for /etc/passwd/x.csv, PermissionError
        raise OhloraError(f"cannot read {what} {path}: {e.strerror}") from None
    with f:
        reader = csv.reader(_text_lines(f, path), strict=True)
        start = 1
        try:
            header = next(reader, None)
            header = [h.strip() for h in header or []]
            missing = [c for c in required if c not in header]
            if missing:
                raise OhloraError(f"{path}: missing column(s) {missing}; the header row is {header}")
            while True:
                start = reader.line_num + 1
                fields = next(reader, None)
                if fields is None:
                    return
                if len(fields) != len(header) and not "".join(fields).strip():
                    continue  # a blank line
                if len(fields) != len(header):
                    span = f"lines {start}-{reader.line_num}" if reader.line_num > start else f"line {start}"
                    hint = " (a quote opened here may be closed much later)" if reader.line_num > start else ""
                    raise OhloraError(f"{path} {span}: {len(fields)} field(s) but the header has "
                                      f"{len(header)}{hint}; quote values that contain commas")
                yield start, dict(zip(header, fields))
        except csv.Error as e:
            if "unexpected end of data" in str(e):
                raise OhloraError(f'{path} line {start}: a quoted value opened on this line is never closed '
                                  f'(it runs to the end of the file at line {reader.line_num}); '
                                  f'close the quote, or write a quote inside a value as ""') from None
            raise OhloraError(f"{path} line {reader.line_num}: not a valid CSV ({e})") from None


def _text_lines(f, path: Path) -> Iterator[str]:
    """Decode line by line, so an encoding problem or a NUL byte is reported with its line."""
    for n, raw in enumerate(f, 1):
        if n == 1:
            if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise OhloraError(f"{path} is UTF-16 text (Excel's \"Unicode text\"): {SAVE_AS_UTF8}")
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if b"\x00" in raw:
            raise OhloraError(f"{path} line {n}: contains a NUL byte: is it a binary file? {SAVE_AS_UTF8}")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise OhloraError(f"{path} line {n} is not UTF-8 text{_guess(raw)}: {SAVE_AS_UTF8}") from None


def _guess(raw: bytes) -> str:
    try:
        raw.decode("cp949")
    except UnicodeDecodeError:
        return ""
    return " (it looks like cp949/EUC-KR, Excel's Korean default)"


def read_text(path: Path, what: str = "file") -> str:
    """A whole UTF-8 text file (a BOM is dropped); OhloraError when it cannot be read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OhloraError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise OhloraError(f"{what} {path} is a directory, not a file") from None
    except OSError as e:
        raise OhloraError(f"cannot read {what} {path}: {e.strerror}") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise OhloraError(f"{path} is UTF-16 text: save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        bad = raw.splitlines()[line - 1] if raw.splitlines() else raw
        raise OhloraError(f"{path} line {line} is not UTF-8 text{_guess(bad)}: save it as UTF-8") from None
