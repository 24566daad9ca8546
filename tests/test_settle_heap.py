"""``bot.runtime.settle_heap`` (called by ``main.py run`` once the bot has started): garbage left by
start-up is collected first, everything alive is frozen out of the collector's view, and objects made
afterwards are still collected."""

from __future__ import annotations

import gc
import weakref

from bot.runtime import settle_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_start_up_garbage_is_collected_and_the_rest_frozen() -> None:
    gc.disable()  # only the collections this test asks for
    try:
        leftover = _cycle()  # garbage of "start-up": a cycle nobody references
        kept = _Node()
        before = gc.get_freeze_count()
        settle_heap()
        assert leftover() is None  # collected before freezing (else it would be kept for good)
        assert gc.get_freeze_count() > before
        assert not gc.is_tracked(kept) or kept not in gc.get_objects()  # frozen: out of the collector's view
        later = _cycle()  # made after the freeze: still collected
        gc.collect()
        assert later() is None
    finally:
        gc.unfreeze()
        gc.enable()
