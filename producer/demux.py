"""The demux pass: every packet of a video's first video stream, read without decoding anything (PyAV).

Usage::

    with open_byte_ranges("videos/long.mp4") as ranges:      # or gs://bucket/long.mp4
        table = demux(ranges)
    table.codec.name, len(table.packets), table.keyframes            # decode-order indices of keyframes
    table.presentation_order()         # packet indices by pts: the order frames come out of a decoder
    table.reported_ms(index)           # the time OpenCV reports for that packet's frame (CAP_PROP_POS_MSEC)

Each :class:`Packet` records its presentation and decode timestamps, its byte range in the file
(``pos``, ``size``), whether it is a keyframe, whether that keyframe is a *clean* start (an H.264 /
HEVC IDR picture; any keyframe of other codecs), and the CRC-32 of its bytes, so that a chunk reading
``pos..pos+size`` later (:mod:`producer.chunkdecode`) can prove it got the packet the demuxer saw.

The sequential producer decodes with OpenCV, which reports a frame's time as
``(pts - stream start_time) * time_base`` in ms (``pkt_dts`` when ``pts`` is 0); :meth:`PacketTable.reported_ms`
computes the same double-precision value from the packet alone, so that the timestamps of every frame —
and with them ``--fps`` sampling and ``frame_index`` — are known before any chunk is decoded
(:mod:`producer.chunks`). :func:`chunkable` says why a file cannot be cut this exactly, if it cannot.
"""

from __future__ import annotations

import base64
import logging
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

from producer.byteranges import ByteRanges, LocalRanges
from producer.errors import InputError
from producer.timestamps import usable_fps

log = logging.getLogger(__name__)

HEAD_BYTES = 8
MAX_HEADER_BYTES = 64
"""How far after ``pos`` a packet's bytes may start (a container element's header)."""
H264_IDR = 5
HEVC_IDR = (19, 20)  # IDR_W_RADL, IDR_N_LP: no leading pictures that reference earlier ones


class Packet(NamedTuple):
    """One packet of the video stream, in decode (file) order."""

    pts: int | None
    dts: int | None
    pos: int
    size: int
    key: bool
    clean: bool
    """A keyframe decoding can start at with nothing before it: an IDR picture (H.264, HEVC), any keyframe
    of other codecs. ``False`` for non-keyframes."""
    crc: int
    """CRC-32 of the packet's bytes."""
    head: int
    """Its first :data:`HEAD_BYTES` bytes (fewer if it is shorter), big-endian: where they are found at or just
    after ``pos`` is where the packet's bytes start (``pos`` is the container's element, e.g. a Matroska block,
    whose header comes first)."""

    @property
    def head_bytes(self) -> bytes:
        return self.head.to_bytes(min(HEAD_BYTES, self.size), "big")


@dataclass(frozen=True)
class CodecParameters:
    """What a decoder needs besides the packets: enough to decode a chunk from its byte range alone."""

    name: str
    codec_tag: str
    extradata: bytes
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "codec_tag": self.codec_tag, "width": self.width, "height": self.height,
                "extradata": base64.b64encode(self.extradata).decode()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CodecParameters:
        return cls(str(data["name"]), str(data["codec_tag"]), base64.b64decode(data["extradata"]),
                   int(data["width"]), int(data["height"]))


@dataclass(frozen=True)
class PacketTable:
    """The video stream of one file, packet by packet, from the demux pass (no decoding)."""

    source: str
    file_size: int
    codec: CodecParameters
    time_base: Fraction
    start_time: int | None
    """The stream's ``start_time`` in ``time_base`` units (what OpenCV subtracts)."""
    fps: float | None
    """The stream's average frame rate (OpenCV's ``CAP_PROP_FPS``), ``None`` if unusable."""
    packets: tuple[Packet, ...]

    @property
    def keyframes(self) -> tuple[int, ...]:
        """Decode-order indices of the keyframes."""
        return tuple(i for i, p in enumerate(self.packets) if p.key)

    def presentation_order(self) -> list[int]:
        """Packet indices sorted by presentation time: frame ``n`` of a decoder's output is packet ``order[n]``."""
        return sorted(range(len(self.packets)), key=lambda i: self.packets[i].pts or 0)

    def reported_ms(self, index: int) -> float:
        """OpenCV's ``CAP_PROP_POS_MSEC`` for the frame of packet ``index`` (the same double arithmetic)."""
        packet = self.packets[index]
        picture = packet.pts if packet.pts not in (None, 0) else packet.dts
        start = self.start_time or 0
        return float((picture or 0) - start) * (self.time_base.numerator / self.time_base.denominator) * 1000


def chunkable(table: PacketTable) -> str | None:
    """Why ``table``'s file cannot be cut into chunks that decode exactly as one decoder would (pure); ``None`` if
    it can. The cases are those where which frames a decoder outputs, or their times, cannot be known from the
    packets alone.
    """
    packets = table.packets
    if not packets:
        return "it has no video packets"
    if table.start_time is None:
        return "its video stream has no start time"
    if any(p.pts is None for p in packets):
        return "some packets have no presentation timestamp"
    if any(p.size == 0 for p in packets):
        return "it has empty packets (dropped-frame placeholders)"
    if not packets[0].key:
        return "it does not start with a keyframe"
    pts = [p.pts for p in packets]
    if len(set(pts)) != len(pts):
        return "two packets have the same presentation timestamp"
    if min(pts) != packets[0].pts:
        return "its first keyframe has frames shown before it (an open GOP at the start)"
    if 0 in pts and pts.index(0) != 0:
        return "a frame other than the first has presentation timestamp 0"
    return None


def nal_types(data: bytes, length_size: int | None, hevc: bool) -> list[int]:
    """The NAL unit types in one H.264/HEVC packet: length-prefixed (``length_size``) or Annex B (pure).

    >>> nal_types(bytes([0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x41]), 4, hevc=False)
    [5, 1]
    >>> nal_types(bytes([0, 0, 1, 0x65, 0x88, 0, 0, 1, 0x06]), None, hevc=False)
    [5, 6]
    """
    types: list[int] = []
    if length_size:
        at = 0
        while at + length_size < len(data):
            length = int.from_bytes(data[at:at + length_size], "big")
            header = data[at + length_size]
            types.append((header >> 1) & 0x3F if hevc else header & 0x1F)
            at += length_size + length
        return types
    at = data.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(data):
        header = data[at + 3]
        types.append((header >> 1) & 0x3F if hevc else header & 0x1F)
        at = data.find(b"\x00\x00\x01", at + 3)
    return types


def nal_length_size(codec: str, extradata: bytes) -> int | None:
    """Bytes of each NAL length prefix in ``avcC``/``hvcC`` extradata; ``None`` for Annex B (pure)."""
    if not extradata or extradata[0] != 1:
        return None
    if codec == "h264" and len(extradata) > 4:
        return (extradata[4] & 3) + 1
    if codec == "hevc" and len(extradata) > 21:
        return (extradata[21] & 3) + 1
    return None


def is_clean_start(codec: str, data: bytes, length_size: int | None) -> bool:
    """True if a keyframe packet is an IDR picture (H.264/HEVC); any keyframe of another codec is clean."""
    if codec == "h264":
        return H264_IDR in nal_types(data, length_size, hevc=False)
    if codec == "hevc":
        return any(t in HEVC_IDR for t in nal_types(data, length_size, hevc=True))
    return True


def demux(ranges: ByteRanges) -> PacketTable:
    """Read every packet of the first video stream (no decoding); :class:`InputError` if there is none."""
    import av

    try:
        container = av.open(ranges.name if isinstance(ranges, LocalRanges) else ranges.stream(), "r")
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{ranges.name!r} is not a video PyAV can open ({exc})",
                         "check that the file plays in a video player, or re-encode it (e.g. to H.264 MP4)") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{ranges.name!r} has no video stream", "give a video file")
        stream = container.streams.video[0]
        context = stream.codec_context
        extradata = bytes(context.extradata or b"")
        codec = CodecParameters(context.name, context.codec_tag or "", extradata, context.width, context.height)
        length_size = nal_length_size(codec.name, extradata)
        packets: list[Packet] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None:
                    continue  # the demuxer's end-of-stream marker
                key = bool(packet.is_keyframe)
                data = bytes(packet) if key else memoryview(packet)[:HEAD_BYTES].tobytes()
                clean = key and is_clean_start(codec.name, data, length_size)
                packets.append(Packet(packet.pts, packet.dts, packet.pos, packet.size, key, clean,
                                      zlib.crc32(packet), int.from_bytes(data[:HEAD_BYTES], "big")))
        except av.FFmpegError as exc:
            raise InputError(f"{ranges.name!r} cannot be demuxed past packet {len(packets)} ({exc})",
                             "the file may be truncated or corrupt; re-encode it") from None
        time_base = Fraction(stream.time_base)
        rate = stream.average_rate  # OpenCV's CAP_PROP_FPS: avg_frame_rate, else 1 / time_base
        fps = float(rate) if rate else (float(1 / time_base) if time_base else None)
        return PacketTable(
            source=ranges.name, file_size=ranges.size, codec=codec, time_base=time_base,
            start_time=stream.start_time, fps=usable_fps(fps), packets=tuple(packets),
        )
