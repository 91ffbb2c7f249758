"""The contract between producer, worker and collector.

One small package so that the three parts cannot drift apart:

- :mod:`framecontract.jobid` — job id rules and generation.
- :mod:`framecontract.message` — frame message attributes (Pub/Sub).
- :mod:`framecontract.layout` — object names in the bucket (hash-sharded, deterministic).
- :mod:`framecontract.manifest` — the per-job manifest written by the producer.
- :mod:`framecontract.settings` — where the topic, bucket and emulators are.

Everything here is pure except :mod:`framecontract.settings` (reads env and one file) and
:mod:`framecontract.clients` (builds Google client objects).
"""

SCHEMA_VERSION = "1"
"""Version of the frame message and result schema; bump on incompatible change."""
