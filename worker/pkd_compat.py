"""Import PeekingDuck 1.3 safely on Python 3.11.

Usage::

    from worker.pkd_compat import import_peekingduck
    import_peekingduck()
    from peekingduck.pipeline.nodes.abstract_node import AbstractNode

PeekingDuck 1.3.0.post1 (the last release) has three import-time side effects we undo:

- ``requirement_checker`` uses ``importlib.abc`` after a bare ``import importlib`` → AttributeError
  on 3.11; importing ``importlib.abc`` first fixes it.
- it installs a ``RequirementChecker`` on ``sys.meta_path`` that would pip-install missing packages
  at run time; we remove it.
- it replaces the root logging handlers and ``sys.excepthook``; we restore both.
"""

from __future__ import annotations

import importlib.abc  # noqa: F401  (must precede the peekingduck import, see above)
import logging
import sys
import warnings
from types import ModuleType

_imported: ModuleType | None = None


def import_peekingduck() -> ModuleType:
    """Import ``peekingduck`` once, undoing its global side effects; return the module."""
    global _imported
    if _imported is not None:
        return _imported
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    excepthook = sys.excepthook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import peekingduck
        from peekingduck.utils import requirement_checker  # noqa: F401
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "RequirementChecker"]
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = excepthook
    _imported = peekingduck
    return peekingduck
