"""Compliance calendar on APScheduler 3 (AsyncIOScheduler) in the bot process.

For now it runs the periodic ``tick`` jobs (pending-approval reminders and escalations); each job's
effects are idempotent (conditional updates), so a restart never repeats a notice. Misfires are
coalesced with a generous grace time instead of APScheduler's default of one second."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import approvals
from bot.core import Ctx
from bot.flows import footage

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

#: (job id, function run in one database unit) — every tick, in order.
TICK_JOBS: list[tuple[str, Callable[[Ctx], None]]] = [
    ("approvals", approvals.tick),
    ("clip_retention", footage.retention_tick),
]


class Scheduler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.scheduler = AsyncIOScheduler(timezone=runtime.settings.tz)

    async def tick(self) -> None:
        for name, fn in TICK_JOBS:
            try:
                await self.runtime.dispatcher.run_unit(fn, channel="scheduler")
            except Exception:
                log.exception("scheduled job %s failed", name)

    def start(self) -> None:
        self.scheduler.add_job(self.tick, "interval", seconds=self.runtime.settings.scheduler_tick_seconds,
                               id="tick", coalesce=True, max_instances=1, misfire_grace_time=300,
                               replace_existing=True)
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
