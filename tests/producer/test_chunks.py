"""The pure core of ``--parallel``: planning every frame from the packets, cutting chunks, and the job's progress
from its chunks' runs (property tests against the sequential definitions), and the demux pass's small parsers."""

from __future__ import annotations

import zlib
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer.chunkprogress import ChunkState, contiguous_progress, job_state
from producer.chunks import boundaries_for, cut_chunks, open_gop_keyframes, plan_frames
from producer.demux import CodecParameters, Packet, PacketTable, chunkable, is_clean_start, nal_types
from producer.numbering import number_published
from producer.options import ProducerOptions
from producer.sampling import TimestampSampler, sampled
from producer.timestamps import TimestampTracker

CODEC = CodecParameters("h264", "avc1", b"", 64, 48)


def packet(pts: int | None, dts: int | None = None, key: bool = False, clean: bool | None = None) -> Packet:
    return Packet(pts, dts, 0, 10, key, key if clean is None else clean, 0, 0)


def table(packets: list[Packet], time_base: Fraction = Fraction(1, 1000), start_time: int | None = 0) -> PacketTable:
    return PacketTable("clip.mp4", 1000, CODEC, time_base, start_time, 25.0, tuple(packets))


@st.composite
def streams(draw: st.DrawFn) -> PacketTable:
    """Packets of a stream with GOPs of random length, B-frames reordered after their references, random steps
    between frames (a variable frame rate), some keyframes open (not IDR, or with leading frames)."""
    stamps, step = [], 0
    for _ in range(draw(st.integers(1, 120))):
        step += draw(st.sampled_from([33, 40, 40, 40, 67, 200]))
        stamps.append(step - 40)
    packets: list[Packet] = []
    position = 0
    while position < len(stamps):
        gop = draw(st.integers(1, 30))
        shown = stamps[position:position + gop]
        packets.append(packet(shown[0], key=True, clean=draw(st.booleans()) or position == 0))
        rest = shown[1:]
        bframes = draw(st.integers(0, 2))
        for at in range(0, len(rest), bframes + 1):  # P then its B-frames: decode order differs from pts order
            group = rest[at:at + bframes + 1]
            packets.append(packet(group[-1]))
            packets.extend(packet(pts) for pts in group[:-1])
        position += gop
    return table(packets)


def sequential(stream: PacketTable, options: ProducerOptions) -> list[tuple[int, int]]:
    """What the sequential producer publishes: ``(frame_index, timestamp_us)``, from its own definitions."""
    tracker = TimestampTracker(stream.fps, stream.source)
    order = stream.presentation_order()
    stamps = [tracker.timestamp_us(n, stream.reported_ms(i)) for n, i in enumerate(order)]
    kept = list(sampled(stamps, TimestampSampler(options.fps), lambda ts: ts))
    if options.duration is not None:
        kept = [ts for ts in kept if ts - stamps[0] < round(options.duration * 1e6)]
    if options.max_frames is not None:
        kept = kept[: options.max_frames]
    return [(f.frame_index, f.timestamp_us) for f in number_published((ts, None) for ts in kept)]


OPTIONS = st.builds(ProducerOptions, fps=st.one_of(st.none(), st.sampled_from([1.0, 5.0, 12.5, 30.0])),
                    max_frames=st.one_of(st.none(), st.integers(1, 60)),
                    duration=st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.3])))


@settings(max_examples=300, deadline=None)
@given(stream=streams(), options=OPTIONS, target=st.integers(1, 12))
def test_chunks_publish_what_the_sequential_producer_publishes(stream: PacketTable, options: ProducerOptions,
                                                               target: int) -> None:
    plan = plan_frames(stream, stream.fps, options.validated())
    chunks = cut_chunks(stream, plan, target, starts=None)
    published = [(index, ts) for chunk in chunks for _, ts, index in chunk.kept]
    assert published == sequential(stream, options)
    assert plan.published == len(published)
    positions = [p for chunk in chunks for p in range(chunk.first_position, chunk.end_position)]
    assert positions == list(range(len(plan.frames))), "the chunks cut the frames read, in order, once"
    keyframes = set(stream.keyframes)
    unclean = open_gop_keyframes(stream)
    for chunk in chunks:
        assert chunk.first_frame_index == sum(c.frames for c in chunks[: chunk.number])
        owned = plan.frames[chunk.first_position:chunk.end_position]
        assert [f.pts for f in owned] == list(chunk.owned_pts)
        assert all(chunk.decode_from <= f.packet <= chunk.decode_to for f in owned), "its decoder sees its frames"
        own = max(k for k in keyframes if k <= min(f.packet for f in owned))  # the keyframe it starts after
        primed = own if own not in unclean else max((k for k in keyframes if k < own), default=0)
        assert chunk.decode_from == (0 if chunk.number == 0 else primed), "an open GOP primes from the one before"
        assert chunk.first_position == 0 or chunk.first_position in {
            n for n, i in enumerate(stream.presentation_order()) if i in keyframes}, "keyframe-aligned"


def test_an_open_gop_primes_its_decoder_from_the_keyframe_before() -> None:
    # decode order: I0 P3 B1 B2 | I6(open: B4 B5 come after it and are shown before it) B4 B5 P9 B7 B8 | I12 ...
    stream = table([packet(0, key=True), packet(120), packet(40), packet(80),
                    packet(240, key=True, clean=False), packet(160), packet(200), packet(360), packet(280),
                    packet(320), packet(480, key=True), packet(400), packet(440), packet(520)])
    assert open_gop_keyframes(stream) == {4, 10}  # 4: not IDR; 10: its leading frames 400, 440
    plan = plan_frames(stream, 25.0, ProducerOptions().validated())
    chunks = cut_chunks(stream, plan, starts=[0, 6, 12])
    assert [(c.first_position, c.end_position, c.decode_from, c.decode_to) for c in chunks] == [
        (0, 6, 0, 6),     # owns 0..200: fed through I6 to B4 B5, which I6 and P3 predict
        (6, 12, 0, 12),   # I6 is open: primed from I0; fed through I12's leading B-frames
        (12, 14, 4, 13),  # I12 is open too: primed from I6
    ]
    assert [c.owned_pts for c in chunks] == [(0, 40, 80, 120, 160, 200), (240, 280, 320, 360, 400, 440),
                                             (480, 520)]


def test_boundaries_are_keyframes_about_evenly_apart() -> None:
    assert boundaries_for(range(795), [0, 250, 500, 750], target=8) == [0, 250, 500, 750]
    assert boundaries_for(range(795), [0, 250, 500, 750], target=2) == [0, 500]
    assert boundaries_for(range(30), [0, 10, 20], target=4) == [0]  # no chunk under MIN_CHUNK_FRAMES
    assert boundaries_for(range(100), list(range(0, 100, 5)), target=4) == [0, 25, 50, 75]


@pytest.mark.parametrize(("packets", "start_time", "reason"), [
    ([], 0, "it has no video packets"),
    ([packet(0, key=True)], None, "its video stream has no start time"),
    ([packet(0, key=True), packet(None)], 0, "some packets have no presentation timestamp"),
    ([packet(0, key=True), Packet(40, 40, 0, 0, False, False, 0, 0)], 0,
     "it has empty packets (dropped-frame placeholders)"),
    ([packet(0), packet(40, key=True)], 0, "it does not start with a keyframe"),
    ([packet(0, key=True), packet(40), packet(40)], 0, "two packets have the same presentation timestamp"),
    ([packet(80, key=True), packet(40), packet(120)], 0,
     "its first keyframe has frames shown before it (an open GOP at the start)"),
    ([packet(-40, key=True), packet(0), packet(40)], -40, "a frame other than the first has presentation "
                                                          "timestamp 0"),
    ([packet(0, -80, key=True), packet(80, -40), packet(40, 0)], 0, None),
])
def test_what_cannot_be_cut_exactly(packets: list[Packet], start_time: int | None, reason: str | None) -> None:
    assert chunkable(table(packets, start_time=start_time)) == reason


def test_reported_times_are_opencvs() -> None:
    stream = table([packet(0, -1024, key=True), packet(2048, -512), packet(1024, 0), packet(512, 512)],
                   Fraction(1, 12800), start_time=0)
    assert [stream.reported_ms(i) for i in stream.presentation_order()] == [-80.0, 40.0, 80.0, 160.0]
    assert table([packet(90_000 + 3003, key=True)], Fraction(1, 90_000), 90_000).reported_ms(0) == 3003 / 90


def test_nal_units_tell_idr_keyframes() -> None:
    idr = bytes([0, 0, 0, 2, 0x65, 0x88])
    sei_then_slice = bytes([0, 0, 0, 2, 0x06, 0x05, 0, 0, 0, 2, 0x41, 0x9A])
    assert nal_types(idr + sei_then_slice, 4, hevc=False) == [5, 6, 1]
    assert is_clean_start("h264", idr, 4) and not is_clean_start("h264", sei_then_slice, 4)
    assert is_clean_start("h264", b"\x00\x00\x00\x01\x65\x88", None)
    assert not is_clean_start("hevc", bytes([0, 0, 0, 2, 21 << 1, 1]), 4)  # CRA: leading pictures may be RASL
    assert is_clean_start("hevc", bytes([0, 0, 0, 2, 19 << 1, 1]), 4)      # IDR_W_RADL
    assert is_clean_start("mpeg4", b"anything", None)


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 6), min_size=1, max_size=8), data=st.data())
def test_the_contiguous_run_over_chunks_is_the_run_of_confirmed_frames(sizes: list[int], data: st.DataObject) -> None:
    states, confirmed, first = [], set(), 0
    for number, size in enumerate(sizes):
        run = data.draw(st.integers(0, size))
        states.append(ChunkState(number, first, first, size, first * 10 if size else None,
                                 "complete" if run == size else "running", run,
                                 (first + run - 1) * 10 if run else None, run))
        confirmed |= set(range(first, first + run))
        first += size
    expected = 0
    while expected in confirmed:
        expected += 1
    progress = contiguous_progress(states)
    assert progress.frames_confirmed == expected
    assert progress.confirmed_timestamp_us == ((expected - 1) * 10 if expected else None)
    assert progress.first_timestamp_us == (0 if expected else None)
    assert contiguous_progress(list(reversed(states))) == progress


def test_a_job_is_complete_only_when_every_chunk_is() -> None:
    done, stopped, failed = (ChunkState(0, 0, 0, 1, 0, state, 1) for state in ("complete", "stopped", "failed"))
    assert job_state([done, done], stop_requested=False) == "complete"
    assert job_state([done, stopped], stop_requested=True) == "stopped"
    assert job_state([done, failed, stopped], stop_requested=True) == "failed"
    assert job_state([done, ChunkState(1, 1, 1, 1)], stop_requested=False) == "failed"  # a chunk never run
    record = ChunkState(3, 750, 600, 45, 75_000_000, "stopped", 12, 76_100_000, 14, error=None).to_record()
    assert ChunkState.from_record({**record, "from_a_newer_producer": 1}).to_record() == record


def test_crc_and_head_locate_a_packet_after_a_container_header() -> None:
    from producer.chunkdecode import packet_bytes

    payload = b"\x00\x00\x00\x05\x65frame-data"
    found = Packet(0, 0, 100, len(payload), True, True, zlib.crc32(payload), int.from_bytes(payload[:8], "big"))
    block = b"\xa3\x90\x81\x00\x00\x80" + payload + b"next"  # a Matroska SimpleBlock's header, then the frame
    assert packet_bytes(block, 0, found) == payload
    assert packet_bytes(block.replace(b"frame", b"FRAME"), 0, found) is None
