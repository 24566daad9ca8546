"""The dispatcher through a recording channel (the shared ``runtime``, called ``rt`` here): linking,
menus, flows, duplicates, restarts. (That the core imports no channel library is checked in
tests/test_architecture.py.)"""

from __future__ import annotations

import dataclasses

import pytest
from sqlmodel import select

from bot.core import Contact
from bot.runtime import Runtime
from storage import audit
from storage.models import Conversation, Person
from tests.helpers import inbound, make_person, make_school


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    return runtime


def _seed(rt: Runtime) -> dict[str, int]:
    def go(s):
        school = make_school(s)
        t = make_person(s, school, "Nguyễn Thị Vân", ["teacher"], phone="+84912345678", unit="Tổ 1")
        p = make_person(s, school, "Trần Văn Đức", ["principal"], phone="+84987654321", link="900")
        return {"teacher": t.id, "principal": p.id, "school": school.id}
    return rt.db.run_sync(go)


async def test_link_by_own_contact_then_menu(rt):
    ids = _seed(rt)
    ch = rt.test_channel
    await rt.dispatcher.handle(inbound("100", command="start"))
    assert ch.sent[-1].reply.ask_contact
    await rt.dispatcher.handle(inbound("100", contact=Contact("0912 345 678", user_id="100")))
    texts = ch.texts("100")
    assert "Nguyễn Thị Vân" in texts[-2]
    menu = ch.sent[-1].reply
    assert any(b.payload == "m:profile" for row in menu.buttons for b in row)
    ev = rt.db.run_sync(lambda s: list(audit.events(s, action="identity.linked")))
    assert ev and ev[0].subject == f"person:{ids['teacher']}"
    assert "912345678" not in str(ev[0].details)


async def test_someone_elses_contact_is_refused(rt):
    _seed(rt)
    ch = rt.test_channel
    await rt.dispatcher.handle(inbound("101", contact=Contact("+84987654321", user_id="900")))
    assert ch.sent[-1].reply.ask_contact  # asked again, nothing linked
    await rt.dispatcher.handle(inbound("101", command="hoso"))
    assert "chưa được liên kết" in ch.sent[-1].reply.text or "not linked" in ch.sent[-1].reply.text


async def test_unknown_number_links_nothing(rt):
    _seed(rt)
    await rt.dispatcher.handle(inbound("102", contact=Contact("0900000000", user_id="102")))
    refused = rt.db.run_sync(lambda s: list(audit.events(s, action="identity.contact_refused")))
    assert refused and refused[0].details["reason"] == "unknown"


async def test_duplicate_update_processed_once(rt):
    _seed(rt)
    ch = rt.test_channel
    msg = inbound("900", command="hoso", update_key="dup-1")
    await rt.dispatcher.handle(msg)
    n = len(ch.sent)
    await rt.dispatcher.handle(msg)
    assert len(ch.sent) == n


async def test_profile_flow_resumes_after_restart(start_runtime):
    rt1 = await start_runtime()
    _seed(rt1)
    await rt1.dispatcher.handle(inbound("900", command="hoso"))
    await rt1.dispatcher.handle(inbound("900", payload="c:email"))
    await rt1.stop()  # the outbox clean-up and the units in flight finish, connections close
    # A new process: same database, new dispatcher.
    rt2 = await start_runtime()
    ch2 = rt2.test_channel
    await rt2.dispatcher.handle(inbound("900", text="not an email"))
    assert "e-mail" in ch2.sent[-1].reply.text.lower() or "email" in ch2.sent[-1].reply.text.lower()
    await rt2.dispatcher.handle(inbound("900", text="  DucTV@ThuongThanh.edu.vn "))
    p = rt2.db.run_sync(lambda s: s.exec(select(Person).where(Person.full_name == "Trần Văn Đức")).one())
    assert p.email == "ductv@thuongthanh.edu.vn"
    await rt2.dispatcher.handle(inbound("900", payload="c:done"))
    conv = rt2.db.run_sync(lambda s: s.exec(select(Conversation)).one())
    assert conv.flow is None
    await rt2.stop()  # the outbox clean-up and the units in flight finish, connections close


async def test_cancel_and_forged_payload(rt):
    _seed(rt)
    ch = rt.test_channel
    await rt.dispatcher.handle(inbound("900", command="hoso"))
    await rt.dispatcher.handle(inbound("900", payload="zz:1:ok"))
    assert ch.sent[-1].reply.buttons  # menu shown again
    await rt.dispatcher.handle(inbound("900", command="huy"))
    conv = rt.db.run_sync(lambda s: s.exec(select(Conversation)).one())
    assert conv.flow is None


async def test_step_exception_gives_apology_and_keeps_state(rt, monkeypatch):
    _seed(rt)
    ch = rt.test_channel
    await rt.dispatcher.handle(inbound("900", command="hoso"))
    flow = rt.registry.flows["profile"]

    def boom(ctx, msg):
        raise RuntimeError("secret detail")

    states = dict(flow.states)
    states["menu"] = boom
    # Patch this runtime's registry only: the module-level FLOW is shared by every registry.
    monkeypatch.setitem(rt.registry.flows, "profile", dataclasses.replace(flow, states=states))
    await rt.dispatcher.handle(inbound("900", payload="c:unit"))
    assert "secret detail" not in ch.sent[-1].reply.text
    conv = rt.db.run_sync(lambda s: s.exec(select(Conversation)).one())
    assert conv.flow == "profile" and conv.state == "menu"


def test_destinations_prefer_a_messenger_over_the_web_chat(sqlite_db) -> None:
    from datetime import timedelta

    from bot.core import destinations
    from storage.models import ChannelIdentity, utcnow
    from tests.helpers import make_person, make_school

    def go(s):
        school = make_school(s)
        p = make_person(s, school, "Nguyễn Thị Vân", ["teacher"])
        now = utcnow()
        s.add(ChannelIdentity(person_id=p.id, channel="telegram", external_id="1", chat_id="1",
                              last_seen_at=now - timedelta(days=3)))
        s.add(ChannelIdentity(person_id=p.id, channel="web", external_id="w", chat_id="w", last_seen_at=now))
        s.flush()
        first = destinations(s, p)[0]
        p.preferred_channel = "web"  # chosen on purpose in /hoso: respected
        s.add(p)
        s.flush()
        return first, destinations(s, p)[0]
    first, chosen = sqlite_db.run_sync(go)
    assert first == ("telegram", "1") and chosen == ("web", "w")


async def test_a_constraint_error_is_not_mistaken_for_a_duplicate_update(rt):
    from bot.core import Handler, Reply, Step
    from storage.models import KeyValue

    _seed(rt)
    ch = rt.test_channel

    def clash(ctx):
        ctx.session.add(KeyValue(key="same", value="a"))
        ctx.session.flush()
        ctx.session.add(KeyValue(key="same", value="b"))  # two people adding the same code at once
        ctx.session.flush()
        return Step.stay(Reply("never"))

    rt.registry.add_handler(Handler(clash, prefix="clash"))
    msg = inbound("900", payload="clash:1")
    await rt.dispatcher.handle(msg)
    assert "Xin lỗi" in ch.texts("900")[-1] or "Sorry" in ch.texts("900")[-1]  # told, not silently dropped
    assert rt.db.run_sync(lambda s: s.get(KeyValue, "same")) is None  # nothing half-saved
    n = len(ch.sent)
    await rt.dispatcher.handle(msg)  # the same update delivered again is still a duplicate
    assert len(ch.sent) == n
