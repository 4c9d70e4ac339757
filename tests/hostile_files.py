"""Hostile files made in code for the attack suite: deep nesting, huge declared sizes, bombs, lies.

Each generator is small and fast; the files are tiny on disk and large (or deep) only where a
parser would make them so.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

# ---- ZIP ----------------------------------------------------------------------------------------


def zip_with_many_entries(count: int) -> bytes:
    """`count` empty stored files, written directly (zipfile would take seconds to write 100,000)."""
    local, central = [], []
    offset = 0
    for index in range(count):
        name = b"f%07d" % index
        header = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
        central.append(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0,
                                   0, 0, 0, offset) + name)
        local.append(header)
        offset += len(header)
    directory = b"".join(central)
    entries = min(count, 0xFFFF)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, entries, entries, len(directory), offset, 0)
    return b"".join(local) + directory + end


def zip_members(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def zip_with_bomb_member(name: str, size: int, extra: dict[str, bytes] | None = None, fill: bytes = b" ") -> bytes:
    """A ZIP whose member `name` inflates to `size` bytes of `fill` (about 1,000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for other, data in (extra or {}).items():
            bundle.writestr(other, data)
        with bundle.open(name, "w", force_zip64=True) as member:
            block = fill * (1 << 20)
            for _ in range(size >> 20):
                member.write(block)
    return buffer.getvalue()


def patch_member(data: bytes, field: str, value: int, index: int = 0) -> bytes:
    """Change a field of member `index` in both its local and its central header."""
    raw = bytearray(data)
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    for _ in range(index):
        local, central = raw.find(b"PK\x03\x04", local + 4), raw.find(b"PK\x01\x02", central + 4)
    if field == "flags":
        raw[local + 6] |= value
        raw[central + 8] |= value
    elif field == "method":
        raw[local + 8:local + 10] = struct.pack("<H", value)
        raw[central + 10:central + 12] = struct.pack("<H", value)
    elif field == "size":
        raw[local + 22:local + 26] = struct.pack("<I", value)
        raw[central + 24:central + 28] = struct.pack("<I", value)
    return bytes(raw)


def zip_with_unreadable_members() -> bytes:
    """One readable member between four that cannot be read: encrypted, odd method, bad CRC, lying size."""
    def one(name: str, data: bytes, field: str | None = None, value: int = 0) -> bytes:
        made = zip_members({name: data}, zipfile.ZIP_STORED if field != "size" else zipfile.ZIP_DEFLATED)
        return patch_member(made, field, value) if field else made

    parts = [one("encrypted.txt", b"secret", "flags", 1), one("method99.txt", b"odd", "method", 99),
             one("lying.txt", b"a" * 100_000, "size", 10), one("good.txt", b"readable member text")]
    crc = bytearray(zip_members({"badcrc.txt": b"hello world"}, zipfile.ZIP_STORED))
    crc[crc.find(b"hello")] = ord("j")
    parts.append(bytes(crc))
    # Merge the single-member archives into one: re-read each member's raw bytes and headers.
    out = io.BytesIO()
    central = []
    for part in parts:
        local_at = part.find(b"PK\x03\x04")
        central_at = part.find(b"PK\x01\x02")
        end_at = part.find(b"PK\x05\x06")
        offset = out.tell()
        out.write(part[local_at:central_at])
        entry = bytearray(part[central_at:end_at])
        entry[42:46] = struct.pack("<I", offset)
        central.append(bytes(entry))
    directory = b"".join(central)
    start = out.tell()
    out.write(directory)
    out.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), start, 0))
    return out.getvalue()


# ---- images -------------------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    """A greyscale PNG of zeros: a few hundred KB on disk for a hundred megapixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    engine = zlib.compressobj(9)
    row = bytes(width + 1)
    body = b"".join(engine.compress(row) for _ in range(height)) + engine.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: decoding it would allocate the whole bitmap."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---- PDF ----------------------------------------------------------------------------------------


def pdf(objects: list[bytes]) -> bytes:
    """A PDF from its numbered objects (1 is the catalog), with a correct cross-reference table."""
    parts, offsets, position = [b"%PDF-1.7\n"], [], 9
    for number, body in enumerate(objects, start=1):
        piece = b"%d 0 obj\n" % number + body + b"\nendobj\n"
        offsets.append(position)
        parts.append(piece)
        position += len(piece)
    parts.append(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    parts.extend(b"%010d 00000 n \n" % offset for offset in offsets)
    parts.append(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, position))
    return b"".join(parts)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    packed = zlib.compress(data)
    return b"<< /Length %d /Filter /FlateDecode %s >>\nstream\n" % (len(packed), extra) + packed + b"\nendstream"


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_TEXT = _stream(b"BT /F1 12 Tf 72 700 Td (Hello page) Tj ET")
_TEXT_PAGE = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
              b"/Contents 4 0 R >>")


def pdf_deep_outline(levels: int) -> bytes:
    """One text page and an outline nested `levels` deep (MuPDF loads it recursively)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R /Outlines 6 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               _TEXT_PAGE, _TEXT, _FONT, b"<< /Type /Outlines /First 7 0 R /Last 7 0 R /Count 1 >>"]
    for index in range(levels):
        number = 7 + index
        parent = number - 1 if index else 6
        child = b" /First %d 0 R /Last %d 0 R /Count 1" % (number + 1, number + 1) if index < levels - 1 else b""
        objects.append(b"<< /Title (Level %d) /Parent %d 0 R /Dest [3 0 R /Fit]%s >>" % (index, parent, child))
    return pdf(objects)


def pdf_page_count(declared: int, real: int = 1) -> bytes:
    """A page tree that declares `declared` pages and holds `real`."""
    kids = b" ".join(b"3 0 R" for _ in range(real))
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, declared),
                _TEXT_PAGE, _TEXT, _FONT])


def pdf_scanned_page(page_points: int, image_side: int, bits: int = 8) -> bytes:
    """A page of `page_points` square holding one image of `image_side` square pixels and no text."""
    row = bytes((image_side * bits + 7) // 8)
    engine = zlib.compressobj(9)
    data = b"".join(engine.compress(row) for _ in range(image_side)) + engine.flush()
    image = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent %d "
             b"/Length %d /Filter /FlateDecode >>\nstream\n" % (image_side, image_side, bits, len(data)) + data +
             b"\nendstream")
    content = _stream(b"q %d 0 0 %d 0 0 cm /Im0 Do Q" % (page_points, page_points))
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /XObject << /Im0 4 0 R >> >> "
            b"/Contents 5 0 R >>" % (page_points, page_points))
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page, image,
                content])


# ---- media --------------------------------------------------------------------------------------


def _box(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", 8 + len(data)) + kind + data


def media_samples() -> dict[str, bytes]:
    """Container files with absurd headers, counts and nesting."""
    fmt = struct.pack("<HHIIHH", 1, 65535, 0xEE6B2800, 0xFFFFFFFF, 65535, 16)
    nested = b""
    for _ in range(20_000):
        nested = _box(b"udta", nested)
    track = _box(b"trak", _box(b"tkhd", bytes(84)))
    return {
        "absurd.wav": b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff" +
                      bytes(1000),
        "id3.mp3": b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + bytes(100),
        "tracks.mp4": _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") +
                      _box(b"moov", _box(b"mvhd", bytes(100)) + track * 5000),
        "nested.mp4": _box(b"ftyp", b"isom\x00\x00\x02\x00isom") + _box(b"moov", nested),
        "ebml.mkv": bytes.fromhex("1A45DFA3") + b"\x01\xff\xff\xff\xff\xff\xff\xff" + bytes(200),
    }
