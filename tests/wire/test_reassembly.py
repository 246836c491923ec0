"""StreamReassembler: order, overlap, duplicates, limits, and TCP sequence arithmetic."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.wire.reassembly import StreamReassembler, tcp_relative

STREAM = bytes(range(256)) * 4  # 1024 distinct-looking bytes


def _feed_all(r: StreamReassembler, segments: list[tuple[int, bytes]]) -> bytes:
    return b"".join(r.feed(off, data) for off, data in segments)


def test_in_order_segments_are_returned_without_copy() -> None:
    r = StreamReassembler()
    first = STREAM[:100]
    assert r.feed(0, first) is first
    assert r.feed(100, STREAM[100:300]) == STREAM[100:300]
    assert r.contiguous == 300
    assert r.pending_segments == 0


def test_out_of_order_segments_wait_for_the_gap() -> None:
    r = StreamReassembler()
    assert r.feed(200, STREAM[200:300]) == b""
    assert r.feed(100, STREAM[100:200]) == b""
    assert r.pending_segments == 1  # adjacent intervals merge
    assert r.pending_bytes == 200
    assert r.feed(0, STREAM[:100]) == STREAM[:300]
    assert r.contiguous == 300
    assert r.pending_bytes == 0


def test_duplicates_and_old_data_return_nothing() -> None:
    r = StreamReassembler()
    r.feed(0, STREAM[:100])
    assert r.feed(0, STREAM[:100]) == b""
    assert r.feed(50, STREAM[50:100]) == b""
    assert r.feed(99, b"") == b""
    assert r.contiguous == 100


def test_overlap_with_delivered_data_returns_only_new_bytes() -> None:
    r = StreamReassembler()
    r.feed(0, STREAM[:100])
    assert r.feed(60, STREAM[60:160]) == STREAM[100:160]


def test_first_copy_wins_on_conflicting_overlap() -> None:
    r = StreamReassembler()
    assert r.feed(10, b"AAAAAAAAAA") == b""  # bytes 10..19
    assert r.feed(15, b"BBBBBBBBBB") == b""  # 15..24, only 20..24 are new
    assert r.feed(0, b"0123456789ZZZZ") == b"0123456789AAAAAAAAAABBBBB"
    assert r.contiguous == 25


def test_segment_covering_several_pending_intervals() -> None:
    r = StreamReassembler()
    for off in (100, 300, 500):
        r.feed(off, STREAM[off : off + 50])
    assert r.pending_segments == 3
    assert r.feed(0, STREAM[:600]) == STREAM[:600]
    assert r.pending_segments == 0


def test_max_bytes_drops_the_rest_and_flags_overflow() -> None:
    r = StreamReassembler(max_bytes=150)
    assert r.feed(0, STREAM[:100]) == STREAM[:100]
    assert not r.overflowed
    assert r.feed(100, STREAM[100:200]) == STREAM[100:150]
    assert r.overflowed
    assert r.feed(150, STREAM[150:200]) == b""
    assert r.contiguous == 150


def test_max_segments_drops_new_intervals_and_flags_overflow() -> None:
    r = StreamReassembler(max_segments=2)
    r.feed(100, STREAM[100:110])
    r.feed(200, STREAM[200:210])
    assert r.feed(300, STREAM[300:310]) == b""
    assert r.overflowed
    assert r.pending_segments == 2
    # A segment at the front is still accepted, since it is delivered at once.
    assert r.feed(0, STREAM[:110]) == STREAM[:110]
    assert r.contiguous == 110


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        StreamReassembler(max_segments=0)


def test_memoryview_input_gives_bytes() -> None:
    r = StreamReassembler()
    out = r.feed(0, memoryview(STREAM)[:10])
    assert type(out) is bytes and out == STREAM[:10]


@pytest.mark.parametrize(
    ("seq", "isn", "expected"),
    [
        (1000, 1000, 0),
        (1500, 1000, 500),
        (5, 0xFFFFFFF0, 21),  # wrapped past 2**32
        (0xFFFFFFF0, 5, 0xFFFFFFEB),  # before the ISN: far outside any window
    ],
)
def test_tcp_relative_wraps_modulo_2_32(seq: int, isn: int, expected: int) -> None:
    assert tcp_relative(seq, isn) == expected


def test_tcp_stream_across_sequence_wrap() -> None:
    isn = 0xFFFFFF00
    r = StreamReassembler()
    segments = [(isn + off, STREAM[off : off + 100]) for off in range(0, 1000, 100)]
    random.Random(7).shuffle(segments)
    out = b"".join(r.feed(tcp_relative(seq & 0xFFFFFFFF, isn), data) for seq, data in segments)
    assert out == STREAM[:1000]


@st.composite
def _segmentations(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A stream, and segments covering it, shuffled, with duplicates and overlaps."""
    stream = draw(st.binary(min_size=1, max_size=400))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(stream)), max_size=20))) | {len(stream)})
    segments = []
    start = 0
    for end in cuts:
        segments.append((start, stream[start:end]))
        start = end
    extra = draw(
        st.lists(
            st.tuples(st.integers(0, len(stream) - 1), st.integers(1, 64)),
            max_size=10,
        )
    )
    segments += [(off, stream[off : off + n]) for off, n in extra]
    return stream, draw(st.permutations(segments))


@settings(max_examples=300)
@given(case=_segmentations())
@example(case=(b"abc", [(1, b"b"), (0, b"a"), (2, b"c"), (1, b"bc")]))
def test_any_segmentation_gives_back_the_stream(case: tuple[bytes, list[tuple[int, bytes]]]) -> None:
    stream, segments = case
    r = StreamReassembler()
    assert _feed_all(r, segments) == stream
    assert r.contiguous == len(stream)
    assert r.pending_segments == 0
    assert not r.overflowed


@settings(max_examples=200)
@given(
    case=_segmentations(),
    max_bytes=st.integers(0, 400),
    max_segments=st.integers(1, 8),
)
def test_limits_only_ever_truncate(
    case: tuple[bytes, list[tuple[int, bytes]]], max_bytes: int, max_segments: int
) -> None:
    stream, segments = case
    r = StreamReassembler(max_bytes=max_bytes, max_segments=max_segments)
    out = _feed_all(r, segments)
    assert out == stream[: len(out)]
    assert len(out) == r.contiguous <= max_bytes
    assert r.pending_segments <= max_segments
    assert r.pending_bytes <= max_bytes
    if len(out) < min(len(stream), max_bytes):
        assert r.overflowed  # only a limit can leave a covered stream incomplete
