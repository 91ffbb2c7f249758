"""The producer: split a video into timestamped JPEG frames and publish them to Pub/Sub.

Usage::

    python -m producer videos/vtest.avi --fps 5 --max-frames 100
    python -m producer 'rtsp://user:pass@cam/stream1' --duration 600 --max-side 960

Modules, functional core first:

- :mod:`producer.options` — option values, checked once into :class:`~producer.options.JobOptions` (pure).
- :mod:`producer.timestamps` — presentation timestamps: monotonicity check and fallback (pure).
- :mod:`producer.sampling` — which frames to keep for a target fps, by timestamp (pure).
- :mod:`producer.numbering` — ``frame_index``: the one place published frames are numbered, 0..N-1 (pure).
- :mod:`producer.messages` — the Pub/Sub message of a frame, inline or claim check (pure).
- :mod:`producer.encode` — JPEG encoding.
- :mod:`producer.redact` — credentials in URLs: ``parse_source_url``, ``redact_url``, ``url_secrets``, ``scrub`` (pure).
- :mod:`producer.mjpeg` — ``multipart/x-mixed-replace`` parsing, every buffer bounded (pure).
- :mod:`producer.httpauth` — answering a camera's 401 challenge: Digest, else Basic (pure).
- :mod:`producer.sources` — the ``FrameSource`` protocol; a video file → :class:`~producer.sources.DecodedFrame`.
- :mod:`producer.images` — a folder of images; :mod:`producer.live` — MJPEG/RTSP/stream/webcam with reconnects.
- :mod:`producer.opening` — which source a SOURCE argument names, and opening it.
- :mod:`producer.prefetch` — decode+encode a few frames ahead in a thread (bounded).
- :mod:`producer.publishing` — batched, flow-controlled publishing with success/failure counts.
- :mod:`producer.progress` — the run of frames Pub/Sub confirmed, and the heartbeat that writes it to the manifest.
- :mod:`producer.resume` — ``--resume``: what may be resumed, the source's fingerprint, leaving out what was published.
- ``--parallel`` (a file in keyframe-aligned chunks, exactly the sequential result): :mod:`producer.demux` (the
  demux pass: packets, no decoding), :mod:`producer.chunks` (every frame planned, the chunks cut; pure),
  :mod:`producer.chunkprogress` (each chunk's confirmed run, the job's contiguous prefix; pure),
  :mod:`producer.byteranges` (a file or a ``gs://`` object by byte range), :mod:`producer.chunkdecode` (one chunk
  decoded from its bytes, OpenCV's pixels), :mod:`producer.chunkpublish` (one chunk published),
  :mod:`producer.parallel` (the coordinator and its worker processes), :mod:`producer.chunkedjob` (which sources,
  starting and resuming), :mod:`producer.cloudjob` (the Cloud Run job's tasks), :mod:`producer.clips` (test and
  benchmark clips).
- :mod:`producer.storage` — the job's manifest and claim-check payloads in GCS.
- :mod:`producer.stopping` — SIGINT/SIGTERM turned into a clean stop.
- :mod:`producer.job` — one job from start to final manifest.
- :mod:`producer.cli` — the command line; :mod:`producer.benchmark` — throughput vs the decode+encode bound.
"""
