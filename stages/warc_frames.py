"""WARC record framing: each record's place and bytes in a WARC or WARC.gz file, checked
(its Content-Length must end exactly at the closing CRLF CRLF), with resynchronisation at the
next ``WARC/1.`` header or gzip member after a badly framed record, so one bad record never
costs the good ones after it. ``crawl_ingest`` turns the frames into documents."""
from __future__ import annotations

import io
import zlib
from typing import BinaryIO, Iterator


class SourceFileError(ValueError):
    """A source file that cannot be read at all (unknown format, unreadable container)."""
    permanent = True  # the same file fails the same way again: not worth a retry


_WARC_MAGIC = b"WARC/"
_RESYNC = b"\nWARC/1."
HEADER_LIMIT = 1 << 16   # WARC headers longer than this are a framing error
_TRAILER = b"\r\n\r\n"  # the two CRLFs that close every WARC record


class Frame:
    """One record's place in the file: ``offset`` (of its gzip member for .gz), ``data`` (the
    record's bytes, None when over the size cap), or ``problem`` ('truncated' | 'bad_framing'
    | 'too_large')."""
    __slots__ = ("offset", "data", "problem")

    def __init__(self, offset: int, data: bytes | None = None, problem: str | None = None):
        self.offset, self.data, self.problem = offset, data, problem


def _content_length(header: bytes) -> int | None:
    for line in header.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            try:
                n = int(value.strip())
            except ValueError:
                return None
            return n if n >= 0 else None
    return None


def _split_record(buf: bytes, at_eof: bool) -> tuple[str, int, int]:
    """Frame of the record starting ``buf``: ('ok' | 'truncated' | 'bad_framing',
    header length, block length)."""
    if not buf.startswith(_WARC_MAGIC):
        return ("truncated" if at_eof and _WARC_MAGIC.startswith(buf) else "bad_framing"), 0, 0
    end = buf.find(b"\r\n\r\n", 0, HEADER_LIMIT)
    if end < 0:
        return ("truncated" if at_eof and len(buf) < HEADER_LIMIT else "bad_framing"), 0, 0
    length = _content_length(buf[:end])
    if length is None:
        return "bad_framing", 0, 0
    return "ok", end + 4, length


def _resync(fileobj: BinaryIO, start: int) -> int | None:
    """Offset of the next line that starts ``WARC/1.`` after ``start`` (streamed)."""
    position, carry = start, b""
    fileobj.seek(start)
    while chunk := fileobj.read(1 << 20):
        window = carry + chunk
        found = window.find(_RESYNC)
        if found >= 0:
            return position - len(carry) + found + 1
        carry = window[-(len(_RESYNC) - 1):]
        position += len(chunk)
    return None


def plain_frames(fileobj: BinaryIO, max_block: int) -> Iterator[Frame]:
    """Frames of an uncompressed WARC: each record's Content-Length must end at its closing
    CRLF CRLF followed by the next ``WARC/`` header or the end of the file."""
    size = fileobj.seek(0, io.SEEK_END)
    pos = 0
    while True:
        fileobj.seek(pos)
        head = fileobj.read(HEADER_LIMIT)
        if not head.strip():
            return  # end of file (blank lines after the last record are fine)
        state, header_len, length = _split_record(head, pos + len(head) >= size)
        if state == "ok":
            block_end = pos + header_len + length
            if block_end + len(_TRAILER) > size:
                fileobj.seek(block_end)
                tail = fileobj.read(len(_TRAILER))
                # the file ends inside the record (or its trailer); a Content-Length too large
                # for a record followed by another one is a framing error instead
                if _resync(fileobj, pos + 1) is None and _TRAILER.startswith(tail):
                    yield Frame(pos, problem="truncated")
                    return
                state = "bad_framing"
            else:
                fileobj.seek(block_end)
                after = fileobj.read(len(_TRAILER) + len(_WARC_MAGIC))
                nxt = after[len(_TRAILER):]
                if after[:len(_TRAILER)] != _TRAILER or not (
                        not nxt.strip() or _WARC_MAGIC.startswith(nxt) or nxt.startswith(_WARC_MAGIC)):
                    state = "bad_framing"
        if state == "truncated":
            yield Frame(pos, problem="truncated")
            return
        if state == "bad_framing":
            yield Frame(pos, problem="bad_framing")
            nxt_pos = _resync(fileobj, pos + 1)
            if nxt_pos is None:
                return
            pos = nxt_pos
            continue
        record_len = header_len + length + len(_TRAILER)
        if length > max_block:
            yield Frame(pos, problem="too_large")
        else:
            fileobj.seek(pos)
            yield Frame(pos, fileobj.read(record_len))
        pos += record_len


def _read_member(fileobj: BinaryIO, start: int, keep: int) -> tuple[bytes, int, bytes, int, str]:
    """Decompress the gzip member at ``start`` keeping at most ``keep`` bytes of output:
    (kept bytes, total output length, last 4 output bytes, compressed length, state) with state
    'ok' | 'truncated' (the file ends inside it) | 'corrupt'."""
    fileobj.seek(start)
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    kept, total, tail, consumed = [], 0, b"", 0
    have = 0
    while not d.eof:
        chunk = fileobj.read(1 << 18)
        if not chunk:
            return b"".join(kept), total, tail, consumed, "truncated"
        consumed += len(chunk)
        try:
            data = d.decompress(chunk, 1 << 22)
            while True:
                total += len(data)
                tail = (tail + data)[-4:]
                if have < keep:
                    kept.append(data[:keep - have])
                    have += len(kept[-1])
                if d.eof or not d.unconsumed_tail:
                    break
                data = d.decompress(d.unconsumed_tail, 1 << 22)
        except zlib.error:
            return b"".join(kept), total, tail, consumed, "corrupt"
    return b"".join(kept), total, tail, consumed - len(d.unused_data), "ok"


def gzip_frames(fileobj: BinaryIO, max_block: int, source_name: str) -> Iterator[Frame]:
    """Frames of a WARC.gz, one record per gzip member; a member whose record is framed badly
    (or whose gzip data is corrupt) is skipped and reading resumes at the next member."""
    size = fileobj.seek(0, io.SEEK_END)
    pos = 0
    keep = max_block + HEADER_LIMIT + 8
    while pos < size:
        fileobj.seek(pos)
        magic = fileobj.read(3)
        if not magic.strip(b"\x00\r\n \t"):
            return
        state = "corrupt"  # not a gzip member here: resume at the next one
        if magic == b"\x1f\x8b\x08":
            data, total, tail, clen, state = _read_member(fileobj, pos, keep)
        if state == "truncated":
            yield Frame(pos, problem="truncated")
            return
        if state == "corrupt":
            yield Frame(pos, problem="bad_framing")
            nxt = _next_member(fileobj, pos + 1)
            if nxt is None:
                return
            pos = nxt
            continue
        frame_state, header_len, length = _split_record(data, total <= len(data))
        if frame_state == "ok" and header_len + length + len(_TRAILER) < total and \
                data[header_len + length + len(_TRAILER):].startswith(_WARC_MAGIC):
            raise SourceFileError(
                f"{source_name}: gzip-compressed as one member instead of one member per record. "
                "Fix it with `warcio recompress IN OUT` and ingest OUT.")
        if frame_state != "ok" or header_len + length + len(_TRAILER) != total or tail != _TRAILER:
            yield Frame(pos, problem="truncated" if frame_state == "truncated" and total == 0
                         else "bad_framing")
        elif length > max_block:
            yield Frame(pos, problem="too_large")
        else:
            yield Frame(pos, data)
        pos += clen


def _next_member(fileobj: BinaryIO, start: int) -> int | None:
    """Offset of the next gzip member after ``start`` whose content starts a WARC record."""
    position, carry = start, b""
    fileobj.seek(start)
    while chunk := fileobj.read(1 << 20):
        window = carry + chunk
        i = window.find(b"\x1f\x8b\x08")
        while i >= 0:
            offset = position - len(carry) + i
            data, _, _, _, _ = _read_member(fileobj, offset, len(_WARC_MAGIC))
            if data.startswith(_WARC_MAGIC):
                return offset
            i = window.find(b"\x1f\x8b\x08", i + 1)
        fileobj.seek(position + len(chunk))
        carry = window[-2:]
        position += len(chunk)
    return None
