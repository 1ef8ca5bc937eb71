#!/usr/bin/env python3
"""Writes the bad .tcz files of this folder (format version 2, see
src/codec/container.rs). Each breaks one rule and carries a correct CRC
where the rule is not the CRC, so the check it targets is the one that fires.
Run from anywhere: python3 tests/corpus/tcz/make.py"""
import os, struct, zlib

here = os.path.dirname(os.path.abspath(__file__))


def tcz(version=2, rate=4, planes=8, channels=3, w=5, h=3, latent_c=3, codec=0x1234ABCD,
        ranges=((0.0, 1.0),) * 3, payload=bytes(range(0, 160, 10)), n=None, crc=True):
    b = b"TCZ1" + bytes([version, rate, planes, channels]) + struct.pack("<II", w, h)
    b += bytes([latent_c]) + struct.pack("<I", codec)
    for lo, hi in ranges:
        b += struct.pack("<ff", lo, hi)
    b += struct.pack("<I", len(payload) if n is None else n) + payload
    c = zlib.crc32(b) & 0xFFFFFFFF
    return b + struct.pack("<I", c if crc else c ^ 1)


good = tcz()
files = {
    "bad_crc": tcz(crc=False),
    "empty": b"",
    "foreign_png_header": b"\x89PNG\r\n\x1a\n" + bytes(64),
    "grey_channels": tcz(channels=1),
    "huge_size": tcz(w=100000, h=100000),
    "inverted_range": tcz(ranges=((1.0, 0.0),) * 3),
    "magic_only": b"TCZ1",
    "nan_range": tcz(ranges=((float("nan"), 1.0),) * 3),
    "payload_length_huge": tcz(n=0xFFFFFFF0),
    "planes_0": tcz(planes=0),
    "planes_9": tcz(planes=9),
    "rate_8": tcz(rate=8),
    "trailing_bytes": good + b"xx",
    "truncated_header": good[:30],
    "truncated_payload": good[:-7],
    "version_9": tcz(version=9),
    "version_1": tcz(version=1),
    "zero_width": tcz(w=0),
}
for name, data in files.items():
    with open(os.path.join(here, name + ".tcz"), "wb") as f:
        f.write(data)
print(f"wrote {len(files)} files")
