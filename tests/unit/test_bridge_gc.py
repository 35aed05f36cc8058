"""`tune_gc`: what a bridge process runs after start-up (connector/bridge/server.py)."""

from __future__ import annotations

import gc

from connector.bridge.server import GC_THRESHOLD, tune_gc


def test_tune_gc_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > 0  # start-up objects moved out of every collection
        assert gc.isenabled()  # fewer collections, not none: cycles are still freed
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
