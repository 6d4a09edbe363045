"""Sample media and numbers the provider fakes share: built here, so the sandbox needs no
files, and no fake imports another (each channel package stands alone)."""

from __future__ import annotations

import itertools
import struct
import zlib

_numbers = itertools.count(1)


def tiny_png() -> bytes:
    """A valid 1x1 PNG (one white pixel), built here so the sandbox needs no image files."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def sandbox_phone(sender: str) -> str:
    """``+447700900123`` stays; a bare id like ``1001`` becomes a US 555 number."""
    if sender.startswith("+"):
        return sender
    digits = "".join(c for c in sender if c.isdigit()) or str(next(_numbers))
    return "+1555" + digits[-7:].zfill(7)


# --- a voice note: one second of Ogg Opus silence, built here (no codec needed) -----------


def ogg_crc(data: bytes) -> int:
    """CRC-32 of Ogg pages: polynomial 0x04C11DB7, not reflected, no init or final xor."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(packets: list[bytes], granule: int, seq: int, flags: int) -> bytes:
    lacing: list[int] = []
    for packet in packets:
        lacing += [255] * (len(packet) // 255) + [len(packet) % 255]
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x48454C49, seq, 0, len(lacing))
    page = header + bytes(lacing) + b"".join(packets)
    return page[:22] + struct.pack("<I", ogg_crc(page)) + page[26:]


def silent_voice_note(seconds: int = 1) -> bytes:
    """A valid Ogg Opus file (RFC 7845) like Telegram's voice notes, a few hundred bytes."""
    pre_skip, frames = 312, seconds * 50  # 20 ms frames at 48 kHz: 960 samples each
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, pre_skip, 48000, 0, 0)
    vendor = b"heliograph sandbox"
    tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    silence = b"\xf8\xff\xfe"  # one CELT-only fullband 20 ms frame that decodes to silence
    return (
        _ogg_page([head], 0, 0, 0x02)  # beginning of stream
        + _ogg_page([tags], 0, 1, 0)
        + _ogg_page([silence] * frames, pre_skip + frames * 960, 2, 0x04)  # end of stream
    )
