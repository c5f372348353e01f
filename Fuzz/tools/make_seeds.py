#!/usr/bin/env python3
"""Writes the binary seeds of Fuzz/seeds: small safetensors files and hand-built PNGs (bit depths, colour types,
palette, Adam7 interlacing) our encoder does not write. Run from Fuzz/seeds. The JSON seeds are plain text files;
the JPEG seeds come from make_jpeg_seeds.c; regression-* files are inputs the fuzzers once failed on."""
import json
import struct
import zlib


def safetensors(name, tensors, meta=None):
    header, data = {}, b""
    if meta:
        header["__metadata__"] = meta
    for n, (dtype, shape, raw) in tensors.items():
        header[n] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    open(f"safetensors/{name}.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + data)


def png(name, w, h, depth, ctype, rows, palette=None, interlace=0):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))
    if palette:
        out += chunk(b"PLTE", palette)
    out += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    open(f"image/{name}.png", "wb").write(out)


safetensors("f32", {"w": ("F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-8, 7)), "empty": ("F32", [0, 4], b"")},
            {"format": "pt"})
safetensors("mixed", {"h": ("F16", [3], bytes([0, 0x3C, 0, 0xC0, 1, 0])), "b": ("BF16", [1], bytes([0xC0, 0x3F])),
                      "i": ("I64", [1], struct.pack("<q", -3)), "j": ("I32", [2], struct.pack("<2i", 5, -6)),
                      "d": ("F64", [1, 1], struct.pack("<d", 2.5)), "u": ("U8", [2], bytes([1, 255])),
                      "k": ("BOOL", [1], bytes([1]))})

png("gray8", 3, 2, 8, 0, b"\x00\x01\x02\x03" + b"\x00\x10\x20\x30")
png("rgb8", 2, 2, 8, 2, b"\x00" + bytes(range(6)) + b"\x01" + bytes(range(6)))
png("rgba16", 1, 1, 16, 6, b"\x00" + bytes([0xAB, 1, 0xCD, 2, 0xEF, 3, 0, 0]))
png("gray_alpha", 2, 1, 8, 4, b"\x00" + bytes([10, 0, 200, 255]))
png("palette4", 2, 1, 4, 3, b"\x00\x29", palette=bytes(x for i in range(16) for x in (i * 10, i, 200)))
png("gray1", 3, 1, 1, 0, b"\x00\xa0")
png("gray16", 2, 1, 16, 0, b"\x00\x00\x07\x00\xff")
png("interlaced", 1, 1, 8, 0, b"\x00\x80", interlace=1)  # Adam7 1x1: only pass 1 holds the pixel
