"""Effectively-once delivery: the bot (``python main.py run``, a real process on the fake Bot API) is
killed with SIGKILL inside one approval's messages, at each successive Bot API call of that unit,
started again, and the messages are counted per chat. Every message arrives; only the one in flight
at the kill arrives twice.

The unit is the principal's ✅ on an IT repair request (``/suachua``): the card edited and "✅ You
approved" for the principal (the chat that acted goes first), the notice to the requester, and a task
card for each of the two IT staff (tracked: their record must point at the copy that stays). The
call in flight is held by the fake, the bot is killed, and then the fake lets that call through —
Telegram accepted it, but the bot never heard back: the worst case.

One kill covers every k at once: ``CALLS`` schools, each with its own people, decide at the same
moment, and the approval of school k is held at its k-th call (units of different chats run side by
side, each with its own outbox rows), so the file needs two process starts per database, not two per k.

On PostgreSQL a restarted process sends the rows of a dead one only once their claim is stale (90 s,
the scheduler's tick): the test ages the claims the kill left instead of waiting for them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from bot.core import Sender, load_registry
from bot.flows.equipment.models import EquipmentItem, RepairRequest
from storage.db import Database
from storage.models import OutboxMessage, RuleSetting, SentMessage, utcnow
from storage.people import link_identity
from tests.crash_harness import BotProcess, GatedTelegram, bot, fake  # noqa: F401 (fixtures)
from tests.fakes.telegram_server import ApiCall, ChatMessage
from tests.helpers import make_person, make_school

#: the Bot API calls of the approval's unit (edit of the card, four messages)
CALLS = 5
SENT = ("sendmessage", "editmessagetext")


@dataclass(frozen=True)
class School:
    """The Telegram chats of one school's teacher, principal and two IT staff."""

    k: int  # this school's approval is killed at its k-th Bot API call

    @property
    def teacher(self) -> int:
        return 3000 + 10 * self.k

    @property
    def principal(self) -> int:
        return self.teacher + 1

    @property
    def it(self) -> tuple[int, int]:
        return self.teacher + 2, self.teacher + 3

    @property
    def chats(self) -> set[int]:
        return {self.teacher, self.principal, *self.it}


SCHOOLS = [School(k) for k in range(1, CALLS + 1)]


def _seed(s: Session) -> None:
    """Per school: a teacher, the principal and two IT staff on Telegram, one projector, and every
    reminder rule off (the only messages are the ones the test causes)."""
    rules = list(load_registry().rules)
    for sc in SCHOOLS:
        school = make_school(s, name=f"Trường Tiểu học số {sc.k}", short_name=f"TH số {sc.k}")
        assert school.id is not None
        for name, roles, uid in (("Nguyễn Thị Vân", ["teacher"], sc.teacher),
                                 ("Trần Văn Đức", ["principal"], sc.principal),
                                 ("Lê Văn Tin", ["it"], sc.it[0]), ("Phạm Thị Mạng", ["it"], sc.it[1])):
            person = make_person(s, school, name, roles)
            link_identity(s, person=person, channel="telegram", external_id=str(uid), chat_id=str(uid))
        s.add(EquipmentItem(school_id=school.id, code="MC-01", name="Máy chiếu phòng 2A", room="2A", quantity=1,
                            is_it=True))
        for key in rules:
            s.add(RuleSetting(school_id=school.id, rule=key, enabled=False))


def has_button(prefix: str) -> Callable[[ChatMessage], bool]:
    return lambda m: any(str(b.get("callback_data", "")).startswith(prefix)
                         for row in m.inline_buttons for b in row)


async def push(bot: BotProcess, uid: int, update: dict[str, Any], expect: Callable[[ChatMessage], bool]) -> None:
    """Queue ``update`` and wait for the bot's answer in the user's chat matching ``expect``."""
    after = bot.fake.last_message_id(uid)
    bot.fake.push_update(update)
    await bot.wait(lambda: any(m.message_id > after and expect(m) for m in bot.fake.bot_messages(uid)), 30,
                   f"the answer to {update}")


async def tap(bot: BotProcess, uid: int, payload: str, expect: Callable[[ChatMessage], bool]) -> None:
    carrying = [m for m in bot.fake.bot_messages(uid) if has_button(payload)(m)]
    assert carrying, f"no {payload!r} button in chat {uid}"
    await push(bot, uid, bot.fake.callback_update(uid, payload, message_id=carrying[-1].message_id), expect)


async def ask_for_repair(bot: BotProcess, sc: School) -> tuple[int, ChatMessage]:
    """The teacher asks IT to take the projector off the network; returns the approval id and the card."""
    fake, teacher = bot.fake, sc.teacher
    await push(bot, teacher, fake.command_update(teacher, "suachua"), lambda m: True)
    await push(bot, teacher, fake.text_update(teacher, "MC-01"), has_button("c:network"))
    await tap(bot, teacher, "c:network", lambda m: not m.inline_buttons)
    await push(bot, teacher, fake.text_update(teacher, "Xin tháo máy chiếu khỏi mạng để mang đi hội trường"),
               has_button("c:skip"))
    await tap(bot, teacher, "c:skip", has_button("c:send"))
    await tap(bot, teacher, "c:send", lambda m: not m.inline_buttons)
    card = await bot.wait(lambda: next(iter(fake.with_button(sc.principal, "ap:")), None), 20, "the principal's card")
    payload = next(str(b["callback_data"]) for row in card.inline_buttons for b in row
                   if str(b.get("callback_data", "")).endswith(":ok"))
    return int(payload.split(":")[1]), card


def key(call: ApiCall) -> tuple[int, str]:
    """What a Bot API call delivers: (chat, the text sent) or (chat, the message edited)."""
    p = call.params
    what = f"edit of {p.get('message_id')}" if call.method.lower() == "editmessagetext" else str(p.get("text"))
    return _int(p.get("chat_id")), what


def deliveries(fake: GatedTelegram, since: int, sc: School) -> Counter[tuple[int, str]]:
    """Every send and edit to the school's chats that reached the fake since call ``since``, whatever
    the fake answered (an edit repeated is refused as "not modified", but it was made)."""
    return Counter(key(c) for c in fake.calls[since:] if c.method.lower() in SENT and key(c)[0] in sc.chats)


def outbox(db: Database) -> list[OutboxMessage]:
    return db.run_sync(lambda s: list(s.exec(select(OutboxMessage)).all()))


async def test_a_kill_at_each_call_of_an_approval_repeats_only_the_message_in_flight(
        bot: BotProcess, db: Database) -> None:
    fake = bot.fake
    db.run_sync(_seed)
    await bot.start()
    asked = await asyncio.gather(*(ask_for_repair(bot, sc) for sc in SCHOOLS))

    # Hold the k-th send or edit of school k's approval (its tap's answerCallbackQuery is no message).
    def kth(sc: School) -> Callable[[dict[str, Any]], bool]:
        seen = [0]

        def match(p: dict[str, Any]) -> bool:
            if _int(p.get("chat_id")) not in sc.chats:
                return False
            seen[0] += 1
            return seen[0] == sc.k
        return match
    matchers = {sc.k: kth(sc) for sc in SCHOOLS}  # one count per school, sends and edits together
    gates = {k: [fake.gate("sendMessage", m), fake.gate("editMessageText", m)] for k, m in matchers.items()}
    since = len(fake.calls)
    for sc, (ap, card) in zip(SCHOOLS, asked, strict=True):
        fake.push_update(fake.callback_update(sc.principal, f"ap:{ap}:ok", message_id=card.message_id))
    held = {sc.k: await bot.wait(lambda sc=sc: next((g.held[0] for g in gates[sc.k] if g.held), None), 30,
                                 f"Bot API call {sc.k} of school {sc.k}'s approval") for sc in SCHOOLS}
    in_flight = {k: key(next(c for c in fake.calls[since:] if c.params is p)) for k, p in held.items()}
    bot.kill()
    for pair in gates.values():  # Telegram accepted each call in flight; the bot never learnt it
        for g in pair:
            fake.open_gate(g, deliver=True)
    rows = Counter(_int(r.chat_id) for r in outbox(db))
    for sc in SCHOOLS:
        before = deliveries(fake, since, sc)
        assert sum(before.values()) == sc.k and before[in_flight[sc.k]] == 1, (sc.k, before)
        # Sent messages left no row behind: only the one in flight and those not sent yet remain.
        assert sum(n for chat, n in rows.items() if chat in sc.chats) == CALLS - sc.k + 1, (sc.k, rows)
    if not db.is_sqlite:  # another process's rows: taken once their claim is stale (see the docstring)
        stale = utcnow() - Sender.STALE - Sender.STALE
        db.run_sync(lambda s: s.execute(update(OutboxMessage).values(claimed_at=stale)))

    await bot.start()
    await bot.wait(lambda: not outbox(db) and all(sum(deliveries(fake, since, sc).values()) >= CALLS + 1
                                                  for sc in SCHOOLS), 30, "the rest of the approvals' messages")
    for sc, (ap, card) in zip(SCHOOLS, asked, strict=True):
        _check(bot, db, sc, ap, card, deliveries(fake, since, sc), in_flight[sc.k])


def _check(bot: BotProcess, db: Database, sc: School, ap: int, card: ChatMessage,
           counts: Counter[tuple[int, str]], in_flight: tuple[int, str]) -> None:
    """School ``sc``'s approval, killed at its call ``sc.k`` (``in_flight``), after the restart."""
    fake, k = bot.fake, sc.k
    twice = {what: n for what, n in counts.items() if n > 1}
    assert twice == {in_flight: 2}, f"kill at call {k}: sent more than once: {twice}, in flight: {in_flight}"
    assert sum(counts.values()) == CALLS + 1, (k, counts)
    # Each chat got what it should: the principal their card edited and a confirmation, the
    # requester the decision, each IT person one task card (twice only if it was in flight).
    chats = Counter(chat for chat, _ in counts.elements())
    assert chats[sc.principal] == 2 + (in_flight[0] == sc.principal), (k, counts)
    for uid in (sc.teacher, *sc.it):
        assert chats[uid] == 1 + (in_flight[0] == uid), (k, counts)
    assert f"#{ap}" in fake.texts(sc.teacher)[-1]
    assert not has_button("ap:")(fake.message(sc.principal, card.message_id))  # the card shows the decision

    # The IT task cards are recorded where they went, once each: at the copy that stays (the last one).
    req = db.run_sync(lambda s: s.exec(select(RepairRequest).where(RepairRequest.approval_id == ap)).one())
    tracked = db.run_sync(lambda s: list(s.exec(select(SentMessage).where(SentMessage.ref_kind == "eqrepair",
                                                                          SentMessage.ref_id == str(req.id))).all()))
    task_cards = {uid: [m for m in fake.bot_messages(uid) if f"#{req.id}" in m.text] for uid in sc.it}
    assert sorted((int(t.chat_id), int(t.message_id)) for t in tracked) == sorted(
        (uid, msgs[-1].message_id) for uid, msgs in task_cards.items()), (k, task_cards)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
