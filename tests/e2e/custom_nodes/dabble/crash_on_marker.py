"""A user's PeekingDuck node that crashes its worker process on a marked frame (tests/e2e/test_faults.py).

A frame is marked when the mean colour of its top-left ``size`` x ``size`` block is within ``tolerance``
of ``marker_bgr`` on every channel (JPEG moves pixels a little). On a marked frame the process ends at
once with ``os._exit``, as a crash in native code would: no exception, no clean-up, no answer. Other
frames pass through untouched. Laid out as PeekingDuck custom nodes are: this file is
``<dir>/dabble/crash_on_marker.py``, its config ``<dir>/configs/dabble/crash_on_marker.yml``, and a
pipeline file names it ``custom_nodes.dabble.crash_on_marker`` (with ``WORKER_CUSTOM_NODES=<dir>``).
"""

import os
from typing import Any

import numpy as np
from peekingduck.pipeline.nodes.abstract_node import AbstractNode


class Node(AbstractNode):
    """Exits the process on a frame whose top-left block has the marker colour."""

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, node_path=__name__, **kwargs)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        block = inputs["img"][: self.size, : self.size].reshape(-1, 3).mean(axis=0)
        if np.all(np.abs(block - np.asarray(self.marker_bgr, dtype=float)) <= self.tolerance):
            os._exit(self.exit_code)
        return {}
