#!/usr/bin/env python3
"""Writes seed corpora for the fuzz targets into fuzz/corpus/<target>/.

Seeds come from the real captures in tests/data/basic.vNN.bin, split into
one seed per frame (prefixed with the byte that makes the decode_frame target
pick the capture's agreed version) and, for the apply target, each whole
stream, plus a few handmade handshake and discovery datagrams. Run from anywhere: `python3 fuzz/seed_corpora.py`.
The corpora are not committed; the fuzzer grows them.
"""

import hashlib
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
DATA = FUZZ.parent / "tests" / "data"
CORPUS = FUZZ / "corpus"
MIN_VERSION = 21
MON_GET_CS, MON_STATS, GET_CS = 0x53, 0x57, 0x47


def write(target, seed):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


def frames(stream):
    """(type, body, whole frame) for every frame of a capture's stream."""
    at = 0
    while at + 4 <= len(stream):
        (length,) = struct.unpack_from(">I", stream, at)
        frame = stream[at : at + 4 + length]
        (ty,) = struct.unpack_from(">I", frame, 4)
        yield ty, frame[8:], frame
        at += 4 + length


def frame(ty, body):
    return struct.pack(">II", 4 + len(body), ty) + body


def main():
    for capture in sorted(DATA.glob("basic.v*.bin")):
        raw = capture.read_bytes()
        (agreed,) = struct.unpack_from("<I", raw, 4)
        pick = bytes([agreed - MIN_VERSION])
        stream = raw[8:]
        write("decode_frame", pick + stream)
        # The apply target: version, a history of 8 jobs, the whole stream.
        write("apply", pick + bytes([7]) + stream)
        for ty, body, whole in frames(stream):
            write("decode_frame", pick + whole)
            if ty == MON_STATS:
                # host id, string length, text, NUL
                write("host_stats", body[8:-1])
            if ty == MON_GET_CS and agreed < 29:
                # Below v29 a MON_GET_CS carries a whole GET_CS body, then
                # job id and client id: a real GET_CS seed.
                write("decode_frame", pick + frame(GET_CS, body[:-8]))

    for own in (21, 34, 43, 44):
        for peer in (43, 44, 20, 1 << 21):
            hello = struct.pack("<I", peer)
            write("handshake", bytes([own - MIN_VERSION]) + hello + struct.pack("<I", min(own, peer)))

    name = b"ICECREAM"
    for request in (30, 34, 36, 43, 44):
        if request < 33:
            reply = bytes([request + 1]) + name.ljust(15, b"\0")
        elif request < 38:
            size = 32 if request < 36 else 268
            reply = bytes([request + 2]) + struct.pack("<IQ", 43, 1_700_000_000)
            reply += name.ljust(size - len(reply), b"\0")
        else:
            reply = bytes([request + 3]) + struct.pack(">III", 43, 0, 1_700_000_000)
            reply += name.ljust(268 - len(reply), b"\0")
        write("discovery", bytes([request]) + reply)
    announcement = b"ICF" + bytes([44]) + struct.pack(">II", 0, 1_700_000_000)
    write("discovery", bytes([44]) + announcement + name.ljust(268 - 12, b"\0"))
    write("discovery", bytes([44, 44]))
    # The text port as icecream 1.4's scheduler answers (protocol/text.rs).
    write("text_port", b"200-ICECC 1.4.0: 41s uptime, 2 hosts, 0 jobs in queue (0 total).\n"
          b"200 Use 'help' for help and 'quit' to quit.\n"
          b" remote1 (127.0.0.1:10246) [x86_64] speed=12.50 jobs=1/2 load=300\n"
          b" remote2 (127.0.0.1:10247) [x86_64] speed=0.00 jobs=0/3 load=0 busy installing since 7 s\n"
          b"   remote3\n200 done\nblockcs remote1\nInvalid command 'bogus'\n401 Sure. But which hosts?\n")
    write("text_port", b"Node Name: remote1\n  Remote name: \n  Architecture: x86_64\n"
          b"  NativeEnv (gcc): /x/native.tar.gz, size 100\n  Current kids: 0 (max: 2)\n"
          b"  cpu: 98 idle, 0 nice\n\nremote2 not reporting\n")

    for target in sorted(CORPUS.iterdir()):
        print(f"{target.name}: {len(list(target.iterdir()))} seeds")


if __name__ == "__main__":
    main()
