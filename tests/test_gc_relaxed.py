"""The sync's relaxed garbage collector is restored however the sync ends."""

from __future__ import annotations

import gc

import pytest

from coordination.gc_relaxed import THRESHOLDS, relaxed_gc


class _Failed(Exception):
    pass


@relaxed_gc
def _observe(seen: list, nested: bool = False, fail: bool = False):
    seen.append((gc.get_threshold(), gc.get_freeze_count() > 0))
    if nested:
        _observe(seen)
        seen.append((gc.get_threshold(), gc.get_freeze_count() > 0))
    if fail:
        raise _Failed
    return "answer"


def test_relaxed_while_running_and_restored_after_nested_runs_and_failures():
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    seen: list = []

    assert _observe(seen, nested=True) == "answer"
    with pytest.raises(_Failed):
        _observe(seen, fail=True)

    assert seen == [(THRESHOLDS, True)] * 4
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_objects_frozen_by_the_process_itself_stay_frozen():
    gc.freeze()
    try:
        _observe([])
        assert gc.get_freeze_count() > 0  # not unfrozen by the sync
    finally:
        gc.unfreeze()
