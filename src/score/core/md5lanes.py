"""MD5 of up to 16 messages at once, one per SIMD lane, when the ``_md5lanes`` C kernel is built.

Why: an upload's part MD5s (its ``Content-MD5`` headers) are independent messages. Hashed one after
another they cost as much CPU as the whole-file MD5 again; on 16 AVX-512 lanes (8 with AVX2) they
cost a fraction of that, which on a machine whose cores the store also needs is upload speed.

The kernel only runs MD5's block function; padding, lengths and digests are done here, so the part
that must match RFC 1321 byte for byte is small and checked against hashlib by the tests. Without a
C compiler at install time the extension is skipped (it is optional) and callers use hashlib.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

try:
    from score.core import _md5lanes  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: callers fall back to hashlib
    _md5lanes = None

MAX_LANES = 16
KERNELS: tuple[str, ...] = tuple(_md5lanes.kernels()) if _md5lanes is not None else ()
_INITIAL_STATE = struct.pack("<4I", 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)


def available() -> bool:
    """True when a SIMD kernel runs on this CPU (AVX-512 or AVX2) and the extension was built."""
    return bool(KERNELS)


class LaneMd5:
    """``lanes`` MD5 computations advanced together: each ``update`` hands every lane its slice of one buffer.

    A lane's slices must be whole 64-byte blocks except its very last one; after a slice that is not,
    the lane is complete and only ``hexdigest`` may follow.
    """

    def __init__(self, lanes: int, kernel: str | None = None) -> None:
        if _md5lanes is None or not KERNELS:
            raise RuntimeError("no multi-buffer MD5 kernel here (extension not built or CPU lacks AVX2)")
        if not 1 <= lanes <= MAX_LANES:
            raise ValueError(f"lanes must be 1..{MAX_LANES}, got {lanes}")
        self._lanes = lanes
        self._kernel = kernel
        self._states = bytearray(_INITIAL_STATE * lanes)
        self._lengths = [0] * lanes
        self._tails: list[bytes | None] = [None] * lanes  # a lane's last partial block, once it has one

    @property
    def lanes(self) -> int:
        return self._lanes

    def update(self, data: Any, offsets: Sequence[int], lengths: Sequence[int]) -> None:
        """Feed lane ``i`` the bytes ``data[offsets[i] : offsets[i] + lengths[i]]`` (length 0: nothing)."""
        if len(offsets) != self._lanes or len(lengths) != self._lanes:
            raise ValueError(f"need an offset and a length for each of the {self._lanes} lanes")
        whole_blocks = []
        for lane, (offset, length) in enumerate(zip(offsets, lengths, strict=True)):
            if length and self._tails[lane] is not None:
                raise ValueError(f"lane {lane} already ended with a partial block")
            aligned = length - length % 64
            if aligned != length:
                self._tails[lane] = bytes(memoryview(data)[offset + aligned : offset + length])
            self._lengths[lane] += length
            whole_blocks.append(aligned)
        if any(whole_blocks):
            _md5lanes.update(self._states, data, offsets, whole_blocks, self._kernel)

    def hexdigest(self, lane: int) -> str:
        """The lane's MD5 so far (its state is left as it is: more whole blocks may still follow)."""
        length = self._lengths[lane]
        tail = self._tails[lane] or b""
        padding = b"\x80" + b"\0" * ((55 - length) % 64) + struct.pack("<Q", (length * 8) & (2**64 - 1))
        last = tail + padding
        state = bytearray(self._states[16 * lane : 16 * lane + 16])
        _md5lanes.update(state, last, [0], [len(last)], self._kernel)
        return state.hex()
