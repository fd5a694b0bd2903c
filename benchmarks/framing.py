"""Framing throughput: encode + decode of N messages of B bytes, against a ceiling.

The ceiling is measured in the same run on the same data: a bare loop that moves the same
bytes the same way without any framing logic (small messages: join groups of the same size
as the encoder's batches, then slice each message back out; large messages: slice into
fragment-sized pieces and join them back). The framing figure is stated as a ratio to it.

    python -m swarmd.benchmarks.framing --messages 200000 --size 200 --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from swarmd.protocol import limits
from swarmd.protocol.framing import (
    BATCH_LENGTH_SIZE_BYTES,
    BATCH_MESSAGE_SIZE_BYTES_MAX,
    FRAGMENT_PAYLOAD_SIZE_BYTES,
    MESSAGE_SIZE_BYTES_MAX,
    FrameDecoder,
    FrameEncoder,
)

#: Bounds of the command line, so a typo cannot ask for terabytes.
MESSAGES_MAX = 10_000_000
TOTAL_BYTES_MAX = 2 * 1024**3


def _framing_round_trip(messages: list[bytes], burst: int) -> tuple[float, float, int]:
    """Seconds to encode, seconds to decode, and the number of frames.

    Messages are queued `burst` at a time and drained, as a shell does between writes (the
    send queue holds at most PEER_SEND_QUEUE_MAX messages).
    """
    encoder, decoder = FrameEncoder(), FrameDecoder()
    encode_s = decode_s = 0.0
    frames = received = 0
    for start in range(0, len(messages), burst):
        started = time.perf_counter()
        for message in messages[start : start + burst]:
            encoder.queue_message(message)
        batch = encoder.frames_to_send()
        encoded = time.perf_counter()
        for frame in batch:
            received += len(decoder.receive_frame(frame, 0.0))
        decode_s += time.perf_counter() - encoded
        encode_s += encoded - started
        frames += len(batch)
    if received != len(messages) or encoder.stats.messages_dropped:
        raise AssertionError(f"decoded {received} of {len(messages)} messages")
    return encode_s, decode_s, frames


def _ceiling_round_trip(messages: list[bytes], size: int) -> float:
    """Seconds for the bare data movement the framing layer cannot avoid.

    Every frame gets a 4-byte prefix (without one, CPython would return the very same object
    from a one-item join or a whole-object slice, and nothing would be copied).
    """
    prefix = b"\x01\x01\x00\x01"
    skip = len(prefix)
    received: list[bytes] = []
    started = time.perf_counter()
    if size <= BATCH_MESSAGE_SIZE_BYTES_MAX:
        per_frame = max(1, limits.FRAME_BATCH_SIZE_BYTES_TARGET // (size + BATCH_LENGTH_SIZE_BYTES))
        for start in range(0, len(messages), per_frame):
            group = messages[start : start + per_frame]
            frame = b"".join((prefix, *group))
            position = skip
            for _ in group:
                received.append(frame[position : position + size])
                position += size
    else:
        step = FRAGMENT_PAYLOAD_SIZE_BYTES
        for message in messages:
            frames = [b"".join((prefix, message[i : i + step])) for i in range(0, size, step)]
            received.append(b"".join([frame[skip:] for frame in frames]))
    elapsed = time.perf_counter() - started
    if len(received) != len(messages):
        raise AssertionError("ceiling loop lost messages")
    return elapsed


def _best_of(repeat: int, messages: list[bytes], size: int, burst: int) -> dict[str, float]:
    encode_s = decode_s = ceiling_s = float("inf")
    frames = 0
    for _ in range(repeat):
        encode, decode, frames = _framing_round_trip(messages, burst)
        if encode + decode < encode_s + decode_s:
            encode_s, decode_s = encode, decode
        ceiling_s = min(ceiling_s, _ceiling_round_trip(messages, size))
    return {"encode_s": encode_s, "decode_s": decode_s, "ceiling_s": ceiling_s, "frames": frames}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench framing", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000, help="messages per run")
    parser.add_argument("--size", type=int, default=200, help="bytes per message")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best one counts")
    parser.add_argument("--burst", type=int, default=1000, help="messages queued per drain")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= MESSAGES_MAX or not 0 <= args.size <= MESSAGE_SIZE_BYTES_MAX:
        parser.error(f"--messages must be 1..{MESSAGES_MAX}, --size 0..{MESSAGE_SIZE_BYTES_MAX}")
    if args.messages * args.size > TOTAL_BYTES_MAX or not 1 <= args.repeat <= 100:
        parser.error(
            f"--messages x --size must stay under {TOTAL_BYTES_MAX} bytes, --repeat 1..100"
        )
    rng = random.Random(args.seed)
    distinct = [rng.randbytes(args.size) for _ in range(min(args.messages, 1024))]
    messages = [distinct[i % len(distinct)] for i in range(args.messages)]
    best = _best_of(args.repeat, messages, args.size, args.burst)
    round_trip_s = best["encode_s"] + best["decode_s"]
    megabytes = args.messages * args.size / 1e6
    result = {
        "benchmark": "framing",
        "messages": args.messages,
        "size_bytes": args.size,
        "frames": int(best["frames"]),
        "encode_messages_per_s": round(args.messages / best["encode_s"]),
        "decode_messages_per_s": round(args.messages / best["decode_s"]),
        "round_trip_messages_per_s": round(args.messages / round_trip_s),
        "round_trip_mb_per_s": round(megabytes / round_trip_s, 1),
        "ceiling_messages_per_s": round(args.messages / best["ceiling_s"]),
        "ceiling_mb_per_s": round(megabytes / best["ceiling_s"], 1),
        "ratio_to_ceiling": round(best["ceiling_s"] / round_trip_s, 3),
        "burst": args.burst,
        "ceiling": "bare bytes join + slice of the same data in the same grouping",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
