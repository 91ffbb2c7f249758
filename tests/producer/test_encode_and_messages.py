"""JPEG encoding round trip, and the frame message: attributes, inline data or claim check (pure)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framecontract.layout import result_name
from framecontract.message import MAX_INLINE_PAYLOAD_BYTES, FrameAttributes
from producer.encode import EncodedFrame, EncodeError, encode_jpeg
from producer.messages import frame_message


def gradient_image(width: int = 64, height: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = x
    image[:, :, 1] = x[::-1]
    image[:, :, 2] = 128
    return image


def test_jpeg_round_trip_keeps_size_and_content() -> None:
    image = gradient_image()
    jpeg = encode_jpeg(image, quality=95)
    assert jpeg.data[:3] == b"\xff\xd8\xff" and jpeg.data[-2:] == b"\xff\xd9"
    assert (jpeg.width, jpeg.height) == (64, 48)
    decoded = cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 3


def test_quality_changes_the_size() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert len(encode_jpeg(noise, 20).data) < len(encode_jpeg(noise, 95).data)


def test_grayscale_images_encode_too() -> None:
    jpeg = encode_jpeg(np.full((10, 20), 77, np.uint8), 90)
    assert (jpeg.width, jpeg.height) == (20, 10)


def test_an_empty_image_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_jpeg(np.zeros((0, 0, 3), np.uint8), 90)


def test_small_frames_are_sent_inline_with_the_contract_attributes() -> None:
    jpeg = EncodedFrame(b"\xff\xd8jpeg", 768, 576)
    message = frame_message("demo", 7, 700_000, jpeg, bucket="frames")
    assert message.data == jpeg.data and message.payload_name is None
    attrs = FrameAttributes.from_pubsub(message.attributes)
    assert attrs == FrameAttributes("demo", 7, 700_000, 768, 576)
    assert "payload_uri" not in message.attributes


def test_large_frames_go_through_the_claim_check() -> None:
    jpeg = EncodedFrame(b"x" * 101, 768, 576)
    message = frame_message("demo", 7, 700_000, jpeg, bucket="frames", inline_limit_bytes=100)
    expected_name = result_name("payloads", "demo", 7, 700_000)
    assert message.data == b""
    assert message.payload_name == expected_name
    attrs = FrameAttributes.from_pubsub(message.attributes)
    assert attrs.payload_uri == f"gs://frames/{expected_name}"
    assert (attrs.frame_index, attrs.timestamp_us, attrs.width, attrs.height) == (7, 700_000, 768, 576)


def test_the_default_threshold_is_the_contracts() -> None:
    at_limit = EncodedFrame(b"x" * MAX_INLINE_PAYLOAD_BYTES, 1, 1)
    assert frame_message("demo", 0, 0, at_limit, "frames").payload_name is None
    over = EncodedFrame(b"x" * (MAX_INLINE_PAYLOAD_BYTES + 1), 1, 1)
    assert frame_message("demo", 0, 0, over, "frames").payload_name is not None
