"""Hostile input, part 4: 1,000 people in the middle of a workflow at the same time.

Every person of a large school walks ``/hoso`` → “Change e-mail” → their own address, then (some)
“Change unit” → their own unit → “Done”, all at once on one dispatcher (``asyncio.gather``; every walker
also yields a random number of times between its steps, so the events of different people
interleave in the database units and the sender). Afterwards each chat received only its own
person's messages, and each stored record, conversation and audit event belongs to the right
person: no cross-talk between conversations."""

from __future__ import annotations

import asyncio
import random
import re
from collections import defaultdict

from sqlmodel import select

from bot.core import Inbound
from bot.runtime import Runtime
from storage import audit
from storage.models import ChannelIdentity, Conversation, Person
from tests.helpers import RecordingChannel, make_school

N = 1000
EMAIL = "gv{i:04d}@ngocthuy.edu.vn"
NAME = "Nguyễn Văn Số {i:04d}"
UNIT = "Tổ {i:04d}"
TOKEN = re.compile(r"(?:gv|Số |Tổ )(\d{4})")


def _seed(rt: Runtime) -> dict[int, int]:
    """N teachers, each linked on the test channel as chat ``c<i>``; returns i → person id."""
    def go(s):  # type: ignore[no-untyped-def]
        school = make_school(s)
        people = [Person(school_id=school.id or 0, full_name=NAME.format(i=i), roles=["teacher"],
                         phone=f"+8491{i:07d}") for i in range(N)]
        s.add_all(people)
        s.flush()
        s.add_all([ChannelIdentity(person_id=p.id or 0, channel="test", external_id=f"c{i}", chat_id=f"c{i}")
                   for i, p in enumerate(people)])
        return {i: p.id for i, p in enumerate(people)}
    return rt.db.run_sync(go)


async def test_a_thousand_interleaved_conversations_do_not_cross(settings, clock, db_url) -> None:  # type: ignore[no-untyped-def]
    # Everyone changes their e-mail; some also their unit (one in two on SQLite, one in four on the slower
    # PostgreSQL round trips, to stay near 20 s on two shared cores).
    every = 2 if db_url.startswith("sqlite") else 4

    def long(i: int) -> bool:
        return i % every == 1

    rt = Runtime(settings.model_copy(update={"web_chat_enabled": False, "telegram_bot_token": ""}), clock=clock)
    ch = RecordingChannel()
    rt.sender.register(ch)
    await asyncio.to_thread(rt.db.migrate)
    ids = _seed(rt)
    rng = random.Random(20261123)
    keys = iter(range(10**9))

    async def walk(i: int) -> None:
        chat = f"c{i}"
        steps: list[dict[str, str]] = [{"command": "hoso"}, {"payload": "c:email"}, {"text": EMAIL.format(i=i)}]
        if long(i):
            steps += [{"payload": "c:unit"}, {"text": UNIT.format(i=i)}, {"payload": "c:done"}]
        for step in steps:
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            await rt.dispatcher.handle(Inbound(channel="test", user_id=chat, chat_id=chat,
                                               update_key=f"k{next(keys)}", **step))  # type: ignore[arg-type]

    order = list(range(N))
    rng.shuffle(order)
    await asyncio.gather(*(walk(i) for i in order))
    await rt.dispatcher.drain()

    # Every message went to the chat of the person it was made for, and mentions nobody else.
    by_chat: dict[str, list[str]] = defaultdict(list)
    for out in ch.sent:
        i = int(out.chat_id[1:])
        assert out.person_id == ids[i], (out.chat_id, out.person_id)
        by_chat[out.chat_id].append(out.reply.text)
        assert {int(t) for t in TOKEN.findall(out.reply.text)} <= {i}, (out.chat_id, out.reply.text)
    for i in range(N):
        texts = by_chat[f"c{i}"]
        assert len(texts) == (6 if long(i) else 3), (i, texts)
        assert EMAIL.format(i=i) in texts[2]  # the card after the address shows this person's own
        if long(i):
            assert UNIT.format(i=i) in texts[4]

    def check(s):  # type: ignore[no-untyped-def]
        people = {p.id: p for p in s.exec(select(Person)).all()}
        for i, pid in ids.items():
            p = people[pid]
            assert p.email == EMAIL.format(i=i), (i, p.email)
            assert p.unit == UNIT.format(i=i) if long(i) else not p.unit, (i, p.unit)
        convs = s.exec(select(Conversation).where(Conversation.channel == "test")).all()
        assert len(convs) == N
        for conv in convs:
            i = int(conv.chat_id[1:])
            assert conv.person_id == ids[i]
            assert (conv.flow, conv.state) == ((None, None) if long(i) else ("profile", "menu")), conv
        events = list(audit.events(s, action="profile.email_changed"))
        assert len(events) == N
        index = {f"person:{pid}": i for i, pid in ids.items()}
        for ev in events:
            i = index[ev.subject]
            assert ev.actor_id == ids[i] and ev.details["new"] == EMAIL.format(i=i)
        assert audit.verify(s).ok

    rt.db.run_sync(check)
    assert rt.dispatcher.processed == N * 3 + sum(3 for i in range(N) if long(i))
    assert len(rt.dispatcher.locks) == 0  # every per-chat lock was released
    await rt.stop()  # the outbox clean-up and the units in flight finish, connections close
