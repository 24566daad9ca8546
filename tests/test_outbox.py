"""The persistent outbox: an event's messages are written in its unit, each row deleted as soon as
its own message went out (before the next one is sent), and sent after a crash by the next start
(or, with several processes, once their claim is stale)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.core import (
    Button,
    MessageRef,
    Outbound,
    OutFile,
    Reply,
    RetryLater,
    Sender,
    payload_to_reply,
    reply_to_payload,
)
from bot.runtime import Runtime
from storage.models import OutboxMessage, SentMessage, utcnow
from tests.helpers import RecordingChannel, inbound, make_person, make_school


@pytest.fixture
def rt(runtime):
    def seed(s):
        school = make_school(s)
        make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="t1")
    runtime.db.run_sync(seed)
    return runtime


def rows(rt: Runtime) -> list[OutboxMessage]:
    return rt.db.run_sync(lambda s: list(s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()))


def test_every_reply_field_survives_the_round_trip():
    reply = Reply("<b>Thẻ</b> duyệt", buttons=((Button("✅ Duyệt", "ap:1:ok"), Button("❌", "ap:1:no")),),
                  file=OutFile("video", "/tmp/clip.mp4", "clip.mp4", "video/mp4"), protect=True,
                  ask_contact="📱 Gửi số", remove_keyboard=True, track=("card", "7"), delete_after=600,
                  edit=MessageRef("telegram", "42", "1001"))
    assert payload_to_reply(reply_to_payload(reply)) == reply
    assert payload_to_reply(reply_to_payload(Reply("x"))) == Reply("x")


def cards(rt: Runtime, ref_id: str) -> list[SentMessage]:
    return rt.db.run_sync(lambda s: list(s.exec(select(SentMessage).where(SentMessage.ref_id == ref_id)).all()))


@dataclass
class WatchingChannel(RecordingChannel):
    """Records, at each send, the texts whose outbox rows are still there; raises for ``fail``."""

    rt: Runtime | None = None
    fail: set[str] = field(default_factory=set)
    rows_at_send: list[list[str]] = field(default_factory=list)
    cards_at_send: list[int] = field(default_factory=list)

    async def send(self, out: Outbound) -> str | None:
        assert self.rt is not None
        self.rows_at_send.append([payload_to_reply(r.payload).text for r in rows(self.rt)])
        self.cards_at_send.append(len(cards(self.rt, "5")))
        if out.reply.text in self.fail:
            raise ConnectionError("the platform went away")
        return await super().send(out)

    async def edit(self, ref: MessageRef, reply: Reply) -> bool:
        assert self.rt is not None
        self.rows_at_send.append([payload_to_reply(r.payload).text for r in rows(self.rt)])
        return await super().edit(ref, reply)


@pytest.fixture
def watching(rt) -> WatchingChannel:
    ch = WatchingChannel(rt=rt)
    rt.sender.register(ch)
    return ch


async def test_an_event_leaves_nothing_once_its_messages_went_out(rt):
    out = await rt.dispatcher.handle(inbound("t1", command="menu"))
    assert out and rt.test_channel.sent
    assert rows(rt) == []  # no batch, nothing left to flush at shutdown


async def test_each_row_is_gone_before_the_next_message_of_its_unit_is_sent(rt, watching):
    """A kill at any send repeats at most the message being sent: the ones before it are settled."""
    card = Reply("Thẻ #5", buttons=((Button("✅", "ap:5:ok"),),), track=("card", "5"))
    unit = [Outbound("test", "t1", Reply("một")), Outbound("test", "t1", card, None),
            Outbound("test", "t1", Reply("sửa", edit=MessageRef("test", "t1", "9"))),
            Outbound("test", "t1", Reply("bốn"))]
    ids = rt.db.run_sync(lambda s: Sender.persist(s, unit))
    mids = await rt.sender.deliver(unit, row_ids=ids)
    assert watching.rows_at_send == [["một", "Thẻ #5", "sửa", "bốn"], ["Thẻ #5", "sửa", "bốn"],
                                     ["sửa", "bốn"], ["bốn"]]
    # The card was recorded with its row's delete, before the next message went out.
    assert watching.cards_at_send == [0, 0, 1]
    assert [c.message_id for c in cards(rt, "5")] == [mids[1]]
    assert rows(rt) == []


async def test_a_failed_send_keeps_its_row_and_is_sent_again_once_its_claim_is_stale(rt, watching):
    watching.fail = {"hai"}
    unit = [Outbound("test", "t1", Reply("một")), Outbound("test", "t1", Reply("hai")),
            Outbound("test", "t1", Reply("ba"))]
    ids = rt.db.run_sync(lambda s: Sender.persist(s, unit))
    mids = await rt.sender.deliver(unit, row_ids=ids)
    assert mids[0] and mids[1] is None and mids[2]
    assert watching.texts("t1") == ["một", "ba"]  # the others are not held up
    assert [payload_to_reply(r.payload).text for r in rows(rt)] == ["hai"]
    # Another process (or the scheduler) leaves it alone while the claim is fresh …
    assert await rt.sender.recover() == 0
    # … and sends it once the claim is stale; sent, its row is gone.
    watching.fail = set()
    old = utcnow() - Sender.STALE - timedelta(seconds=5)
    rt.db.run_sync(lambda s: s.execute(update(OutboxMessage).values(claimed_at=old)))
    assert await rt.sender.recover() == 1
    assert watching.texts("t1") == ["một", "ba", "hai"] and rows(rt) == []


async def test_a_429_is_waited_out_once_and_then_left_to_the_retry(rt):
    """Flood control: the message is sent again after the wait the platform asked for; a second 429
    keeps its row (tried again once the claim is stale), and the next message is not held up."""
    class Flooded(RecordingChannel):
        refusals: dict[str, int] = {"chờ": 1, "chờ mãi": 2}

        async def send(self, out: Outbound) -> str | None:
            left = self.refusals.get(out.reply.text, 0)
            if left:
                self.refusals[out.reply.text] = left - 1
                raise RetryLater(0.01)
            return await super().send(out)
    ch = Flooded()
    rt.sender.register(ch)
    unit = [Outbound("test", "t1", Reply(t)) for t in ("chờ", "chờ mãi", "sau")]
    ids = rt.db.run_sync(lambda s: Sender.persist(s, unit))
    mids = await rt.sender.deliver(unit, row_ids=ids)
    assert mids[0] and mids[1] is None and mids[2]
    assert ch.texts("t1") == ["chờ", "sau"]
    assert [payload_to_reply(r.payload).text for r in rows(rt)] == ["chờ mãi"]


async def test_a_message_the_platform_refused_is_not_sent_again(rt):
    """An adapter that answered (no id: blocked, refused) has settled the message: no retry."""
    class Refusing(RecordingChannel):
        async def send(self, out: Outbound) -> str | None:
            self.sent.append(out)
            return None
    ch = Refusing()
    rt.sender.register(ch)
    unit = [Outbound("test", "t1", Reply("bị chặn"))]
    ids = rt.db.run_sync(lambda s: Sender.persist(s, unit))
    assert await rt.sender.deliver(unit, row_ids=ids) == [None]
    assert rows(rt) == []


async def test_a_second_process_never_takes_the_rows_of_a_delivery_in_progress(rt):
    """Several processes on one database: the rows of a unit being sent are claimed, and a slow
    delivery (a long upload, a 429 wait) keeps renewing the claim of the rows it has left, the one
    in flight included, so no other process takes them as a dead process's rows."""
    other = Sender(rt.db)
    elsewhere = RecordingChannel()
    other.register(elsewhere)
    unit = [Outbound("test", "t1", Reply(t)) for t in ("một", "hai", "ba")]
    ids = rt.db.run_sync(lambda s: Sender.persist(s, unit))
    # Claimed a while ago (a slow commit, a paused process) …
    rt.db.run_sync(lambda s: s.execute(update(OutboxMessage).values(claimed_at=utcnow() - timedelta(seconds=45))))
    started = utcnow()
    taken: list[int] = []

    def renewed() -> bool:
        return all(r.claimed_at >= started for r in rows(rt))

    class Slow(RecordingChannel):
        async def send(self, out: Outbound) -> str | None:
            if not self.sent:  # … and the first upload takes long: meanwhile the claim is renewed
                for _ in range(500):
                    if renewed():
                        break
                    await asyncio.sleep(0.01)
                assert renewed()
            # Another process counting everything claimed before this delivery began as stale
            # finds nothing to take, not even the message being sent.
            taken.append(await other.recover(before=started))
            return await super().send(out)
    ch = Slow()
    rt.sender.register(ch)
    rt.sender.RENEW_AFTER = 0.05
    await rt.sender.deliver(unit, row_ids=ids)
    assert taken == [0, 0, 0] and not elsewhere.sent
    assert ch.texts("t1") == ["một", "hai", "ba"] and rows(rt) == []


async def test_messages_committed_but_not_sent_go_out_once_at_the_next_start(rt):
    ch: RecordingChannel = rt.test_channel
    # A unit commits its messages; the process dies before sending them (simulated: nothing sent).
    track = Reply("Thẻ #5", buttons=((Button("✅", "ap:5:ok"),),), track=("card", "5"))
    rt.db.run_sync(lambda s: Sender.persist(s, [Outbound("test", "t1", Reply("một")),
                                                 Outbound("test", "t1", track, None),
                                                 Outbound("test", "t1", Reply("ba"))]))
    assert len(rows(rt)) == 3 and not ch.sent
    fresh = Sender(rt.db)
    fresh.register(ch)
    # Rows claimed just now belong to a live process: only a start (SQLite) or staleness takes them.
    assert await fresh.recover() == 0
    assert await fresh.recover(before=utcnow() + timedelta(seconds=1)) == 3
    assert [o.reply.text for o in ch.sent] == ["một", "Thẻ #5", "ba"]  # in order
    assert rows(rt) == []
    assert len(cards(rt, "5")) == 1  # the card is recorded, so it can be edited after a decision
    assert await fresh.recover(before=utcnow() + timedelta(seconds=1)) == 0  # not twice


async def test_a_self_deleting_secret_is_never_written_to_the_outbox(rt):
    secret = Reply("Mật khẩu tạm: Xy7@pQ2#kLm9", delete_after=300)
    ids = rt.db.run_sync(lambda s: Sender.persist(s, [Outbound("test", "t1", Reply("trước")),
                                                       Outbound("test", "t1", secret)]))
    assert len(ids) == 1
    assert [payload_to_reply(r.payload).text for r in rows(rt)] == ["trước"]


async def test_a_stale_claim_is_taken_over_and_a_row_that_keeps_failing_is_dropped(rt):
    ch: RecordingChannel = rt.test_channel
    rt.db.run_sync(lambda s: Sender.persist(s, [Outbound("test", "t1", Reply("cũ"))]))
    old = utcnow() - Sender.STALE - timedelta(seconds=5)
    rt.db.run_sync(lambda s: s.execute(update(OutboxMessage).values(claimed_at=old)))
    assert await rt.sender.recover() == 1
    assert ch.texts("t1") == ["cũ"]
    # A row whose sending kills the process every time is not retried for ever.
    rt.db.run_sync(lambda s: Sender.persist(s, [Outbound("test", "t1", Reply("độc"))]))
    rt.db.run_sync(lambda s: s.execute(update(OutboxMessage).values(claimed_at=old, attempts=3)))
    assert await rt.sender.recover() == 0
    assert rows(rt) == [] and ch.texts("t1") == ["cũ"]


async def test_runtime_start_sends_what_a_crashed_run_left_before_new_events(rt, settings):
    ch: RecordingChannel = rt.test_channel
    rt.db.run_sync(lambda s: Sender.persist(s, [Outbound("test", "t1", Reply("trước khi tắt"))]))
    rt.settings.web_chat_enabled = False
    rt.channels.append(ch)  # type: ignore[arg-type]  # a channel with no routes: only its sending is used
    ch.setup_routes = lambda app: None  # type: ignore[attr-defined]
    ch.start = _noop  # type: ignore[attr-defined]
    ch.stop = _noop  # type: ignore[attr-defined]
    await rt.start(serve_web=False, scheduler=False)
    try:
        await rt.dispatcher.handle(inbound("t1", command="menu"))
        if rt.db.is_sqlite:
            assert ch.texts("t1")[0] == "trước khi tắt"  # the left-over message first, then the new answer
            assert len(ch.texts("t1")) >= 2 and rows(rt) == []
        else:
            # A shared database: another live process may be sending that row; it is taken only
            # once its claim is stale (by the scheduler's tick).
            assert "trước khi tắt" not in ch.texts("t1") and len(rows(rt)) == 1
    finally:
        await rt.stop()


async def _noop() -> None:
    return None


async def test_the_acting_chat_gets_its_answers_before_other_chats(rt):
    """An event's messages to the person who acted go out first (each chat in its own order); the
    ids come back in the order of the event's outbox."""
    ch: RecordingChannel = rt.test_channel
    outbox = [Outbound("test", "principal", Reply("card 1")), Outbound("test", "teacher", Reply("sent 1")),
              Outbound("test", "principal", Reply("card 2")), Outbound("test", "teacher", Reply("sent 2"))]
    ids = await rt.sender.deliver(outbox, first=("test", "teacher"))
    assert [(o.chat_id, o.reply.text) for o in ch.sent] == [
        ("teacher", "sent 1"), ("teacher", "sent 2"), ("principal", "card 1"), ("principal", "card 2")]
    by_text = {o.reply.text: i for i, o in enumerate(ch.sent)}
    assert len(set(ids)) == 4 and None not in ids
    # ids line up with the outbox: "card 1" got the id issued third, "sent 1" the first
    issued = sorted(ids, key=lambda x: int(x))  # type: ignore[arg-type,return-value]
    assert [issued.index(i) for i in ids] == [by_text[o.reply.text] for o in outbox]
    ch.sent.clear()
    await rt.sender.deliver(outbox)  # no acting chat (scheduler, background jobs): as queued
    assert [o.reply.text for o in ch.sent] == ["card 1", "sent 1", "card 2", "sent 2"]
