"""The persistent outbox: an event's messages are written in its unit, deleted once sent, and sent
after a crash by the next start (or, with several processes, once their claim is stale)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.core import Button, MessageRef, Outbound, OutFile, Reply, Sender, payload_to_reply, reply_to_payload
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


async def test_an_event_leaves_nothing_once_its_messages_went_out(rt):
    out = await rt.dispatcher.handle(inbound("t1", command="menu"))
    assert out and rt.test_channel.sent
    # Deleted in a batch shortly after (one unit for many events) …
    for _ in range(100):
        if not rows(rt):
            break
        await asyncio.sleep(0.02)
    assert rows(rt) == []
    # … or at once when asked (shutdown).
    await rt.dispatcher.handle(inbound("t1", command="menu"))
    await rt.sender.flush()
    assert rows(rt) == []


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
    await fresh.flush()
    assert rows(rt) == []
    cards = rt.db.run_sync(lambda s: s.exec(select(SentMessage).where(SentMessage.ref_id == "5")).all())
    assert len(cards) == 1  # the card is recorded, so it can be edited after a decision
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
    await rt.sender.flush()
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
        await rt.sender.flush()
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
