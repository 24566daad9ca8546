"""Messaging windows: a platform that lets the bot write to a person only for some time after that
person's last message. Zalo OA: 7 days (the "consultation" window, ZALO.md); past it a message
needs a paid template, so reminders wait (held) until the person writes again."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core.messages import ChannelName

#: channel → how long after the person's last message the bot may still write
MESSAGING_WINDOWS: dict[str, timedelta] = {ChannelName.ZALO_OA: timedelta(days=7)}


def window_open(channel: str, last_seen_at: datetime | None, now: datetime) -> bool:
    """Whether the bot may write on ``channel`` to someone last seen at ``last_seen_at``."""
    window = MESSAGING_WINDOWS.get(channel)
    if window is None:
        return True
    return last_seen_at is not None and now - last_seen_at <= window
