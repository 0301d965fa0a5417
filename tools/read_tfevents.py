#!/usr/bin/env python3
"""Print the scalars of TensorBoard event files, checking every CRC, without TensorFlow.

    python3 tools/read_tfevents.py RUN/logs/events.out.tfevents.*     # one "step tag value" a line
    python3 tools/read_tfevents.py --wall-time FILE                    # "wall_time step tag value"

Python 3 standard library only. Reads the files the engine's TensorBoardWriter writes
(engine/tensorboard_writer.h) and the scalars of TensorFlow's and PyTorch's event files.

File framing (TFRecord). A file is a sequence of records, each:

    uint64  length of the data, little-endian
    uint32  masked CRC-32C of those 8 length bytes, little-endian
    bytes   the data (`length` bytes): one serialized Event
    uint32  masked CRC-32C of the data, little-endian

CRC-32C is the Castagnoli CRC: reflected polynomial 0x82F63B78, initial value and final XOR
0xFFFFFFFF; crc32c(b"123456789") == 0xE3069283. The mask is
    masked(crc) = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) mod 2**32.
A writer that crashed can leave the last record cut short: that is reported and the records before
it are printed. A CRC that does not match is damage: reported with the record's byte offset, and
the exit status is 1.

Protobuf messages (subsets of tensorflow/core/util/event.proto and summary.proto):

    message Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    message Summary { repeated Value value = 1; }
    message Value   { string tag = 1; float simple_value = 2; }

Wire format: each field is a varint key (field_number << 3 | wire_type) followed by its value;
wire type 0 is a varint (base 128, low 7 bits first, high bit set on all bytes but the last; step
is int64, so a negative step is its 64-bit two's complement), 1 is 8 bytes little-endian
(wall_time, an IEEE double), 2 is a varint length then that many bytes (strings and nested
messages), 5 is 4 bytes little-endian (simple_value, an IEEE float). The first Event of a file has
file_version "brain.Event:2"; each later one a wall_time, a step and a Summary. Fields and Values
this script does not know (images, histograms, tensors) are skipped.
"""

import argparse
import struct
import sys

CRC32C_POLYNOMIAL = 0x82F63B78
MASK_DELTA = 0xA282EAD8


def _crc32c_table():
    table = []
    for byte in range(256):
        r = byte
        for _ in range(8):
            r = (r >> 1) ^ CRC32C_POLYNOMIAL if r & 1 else r >> 1
        table.append(r)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


class Damaged(Exception):
    """A record whose CRC does not match, or an Event that is not well-formed protobuf."""


def split_records(data, path):
    """The records' (offset, bytes), and how many bytes at the end start a record cut short."""
    records = []
    offset = 0
    while offset < len(data):
        left = len(data) - offset
        if left < 12:
            return records, left
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        if masked_crc32c(header) != length_crc:
            raise Damaged(f"{path}: the record at byte {offset} is corrupt: the CRC of its length does not match")
        if left - 12 < 4 or length > left - 16:
            return records, left
        body = data[offset + 12:offset + 12 + length]
        (body_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
        if masked_crc32c(body) != body_crc:
            raise Damaged(f"{path}: the record at byte {offset} is corrupt: the CRC of its data does not match")
        records.append((offset, body))
        offset += 16 + length
    return records, 0


def _varint(buf, pos, where):
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise Damaged(f"{where}: a varint runs past the end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
    raise Damaged(f"{where}: a varint is longer than 10 bytes")


def fields(buf, where):
    """Yields (field_number, wire_type, value) of a message: an int for wire type 0, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise Damaged(f"{where}: a {size}-byte field runs past the end")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos, where)
            if pos + size > len(buf):
                raise Damaged(f"{where}: a field of {size} bytes runs past the end")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise Damaged(f"{where}: wire type {wire} is not used by event files")
        yield number, wire, value


def decode_event(buf, where):
    """(wall_time, step, file_version, [(tag, value)]) of one serialized Event."""
    wall_time, step, file_version, scalars = 0.0, 0, None, []
    for number, wire, value in fields(buf, where):
        if number == 1 and wire == 1:
            (wall_time,) = struct.unpack("<d", value)
        elif number == 2 and wire == 0:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3 and wire == 2:
            file_version = value.decode("utf-8", "replace")
        elif number == 5 and wire == 2:
            for s_number, s_wire, s_value in fields(value, where):
                if s_number != 1 or s_wire != 2:
                    continue
                tag, simple = None, None
                for v_number, v_wire, v_value in fields(s_value, where):
                    if v_number == 1 and v_wire == 2:
                        tag = v_value.decode("utf-8", "replace")
                    elif v_number == 2 and v_wire == 5:
                        (simple,) = struct.unpack("<f", v_value)
                if simple is not None:
                    scalars.append((tag or "", simple))
    return wall_time, step, file_version, scalars


def float32_text(value):
    """The shortest decimal text that reads back as the same float32 (6.8123, not 6.812300205230713)."""
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.pack("<f", float(text)) == target:
            return text
    return repr(value)


def print_file(path, wall_time, out):
    """Prints the scalars of one file; returns the bytes of a last record cut short (0 if none)."""
    with open(path, "rb") as f:
        data = f.read()
    records, tail = split_records(data, path)
    for offset, body in records:
        wall, step, _, scalars = decode_event(body, f"{path}: the record at byte {offset}")
        for tag, value in scalars:
            prefix = f"{wall:.6f} " if wall_time else ""
            out.write(f"{prefix}{step} {tag} {float32_text(value)}\n")
    return tail


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="event files (events.out.tfevents.*)")
    parser.add_argument("--wall-time", action="store_true", help="print each event's wall time first")
    args = parser.parse_args()
    status = 0
    for path in args.files:
        try:
            tail = print_file(path, args.wall_time, sys.stdout)
        except Damaged as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        except OSError as e:
            print(f"error: {path}: {e.strerror}", file=sys.stderr)
            status = 1
            continue
        if tail:
            print(f"note: {path}: the last record is cut short ({tail} bytes; the writer stopped mid-write); "
                  "the records before it are printed", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
