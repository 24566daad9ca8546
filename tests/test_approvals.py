"""The approval engine through the dispatcher (recording channel): decisions, authorisation,
exactly-once under concurrency, delegation, reminders/escalation across restarts, audit chain."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.engine import approvals
from bot.engine.approvals import StageSpec
from bot.runtime import Runtime
from storage import audit
from storage.models import Approval, ApprovalStage, AuditEvent, Person, PersonStatus
from tests.helpers import inbound, make_person, make_school

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(runtime, clock):
    def seed(s):
        school = make_school(s)
        other = make_school(s, name="Trường Tiểu học Thượng Thanh", short_name="TH Thượng Thanh")
        ids = {
            "teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="t1").id,
            "principal": make_person(s, school, "Trần Văn Đức", ["principal"], link="p1").id,
            "vp1": make_person(s, school, "Lê Thị Hoa", ["vice_principal"], link="v1").id,
            "vp2": make_person(s, school, "Phạm Văn Nam", ["vice_principal"], link="v2").id,
            "secretary": make_person(s, school, "Đỗ Thu Trang", ["secretary", "teacher"], link="s1").id,
            "board_head": make_person(s, school, "Hoàng Minh Tuấn", ["board_head"], link="b1").id,
            "outsider": make_person(s, other, "Vũ Văn Hải", ["principal"], link="x1").id,
        }
        return ids

    ids = runtime.db.run_sync(seed)
    return runtime, runtime.test_channel, ids, clock


def _request(rt: Runtime, requester_id: int, stages: list[StageSpec], title: str = "Footage request") -> int:
    out: dict[str, int] = {}

    def fn(ctx):
        ap = approvals.request(ctx, kind="test", subject="test:1", title=title,
                               fields=[("Camera", "Cổng chính"), ("Purpose", "<b>evidence</b>")], stages=stages)
        out["id"] = ap.id

    asyncio.get_event_loop()  # noqa: B018 - ensure loop
    return out, fn  # type: ignore[return-value]


async def request(rt: Runtime, requester_id: int, stages: list[StageSpec]) -> int:
    out, fn = _request(rt, requester_id, stages)
    await rt.dispatcher.run_unit(fn, person_id=requester_id)
    return out["id"]


def status(rt: Runtime, ap_id: int) -> str:
    return rt.db.run_sync(lambda s: s.get(Approval, ap_id).status)


def actions(rt: Runtime, action: str) -> list[AuditEvent]:
    return rt.db.run_sync(lambda s: list(audit.events(s, action=action)))


async def test_approve_edits_every_card_and_tells_requester(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="vice_principal")])
    cards = [o for o in ch.sent if o.chat_id in ("v1", "v2")]
    assert len(cards) == 2 and all(o.reply.buttons for o in cards)
    assert "&lt;b&gt;evidence&lt;/b&gt;" in cards[0].reply.text  # user values escaped
    await rt.dispatcher.handle(inbound("v1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "approved"
    edited = {ref.chat_id for ref, _ in ch.edits}
    assert edited == {"v1", "v2"}
    last_edit = ch.edits[-1][1]
    assert "Lê Thị Hoa" in last_edit.text and not last_edit.buttons
    assert any("Lê Thị Hoa" in o.reply.text for o in ch.sent if o.chat_id == "t1")


async def test_a_tap_that_beats_the_record_of_its_card_still_edits_that_card(env):
    """The card is sent, then where it went is recorded in a second unit; a tap in between must
    still turn the tapped card into the decision (no live buttons left on it)."""
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="vice_principal")])
    rt.db.run_sync(lambda s: s.execute(text("DELETE FROM sent_message WHERE chat_id = 'v1'")))
    mid = ch.sent.index(next(o for o in ch.sent if o.chat_id == "v1"))  # any id: only the tap knows it
    await rt.dispatcher.handle(inbound("v1", payload=f"ap:{ap}:ok", message_id=f"m{mid}"))
    assert status(rt, ap) == "approved"
    edits = {(ref.chat_id, ref.message_id): reply for ref, reply in ch.edits}
    assert ("v1", f"m{mid}") in edits and not edits[("v1", f"m{mid}")].buttons
    assert "v2" in {ref.chat_id for ref, _ in ch.edits}  # the recorded card is edited as before
    # A tap carrying another approval's payload does not touch this approval's cards, nor decide it.
    other = await request(rt, ids["teacher"], [StageSpec(role="vice_principal")])
    before = len(ch.edits)
    await rt.dispatcher.handle(inbound("v2", payload=f"ap:{ap}:ok", message_id="m-other"))
    assert not [ref for ref, _ in ch.edits[before:] if ref.message_id == "m-other"]
    assert status(rt, other) == "pending"


async def test_reject_with_reason(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:no"))
    assert status(rt, ap) == "pending"  # asks for a reason first
    await rt.dispatcher.handle(inbound("p1", text="Không đúng   mục đích"))
    assert status(rt, ap) == "rejected"
    told = [o.reply.text for o in ch.sent if o.chat_id == "t1"][-1]
    assert "Không đúng mục đích" in told
    stage = rt.db.run_sync(lambda s: s.exec(select(ApprovalStage).where(ApprovalStage.approval_id == ap)).one())
    assert stage.note == "Không đúng mục đích"


async def test_double_tap_and_replay_yield_one_decision(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:ok"))
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:ok"))
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:no"))
    assert len(actions(rt, "approval.decided")) == 1
    assert "Trần Văn Đức" in ch.texts("p1")[-1]


async def test_two_approvers_at_once_one_decision(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="vice_principal")])
    await asyncio.gather(rt.dispatcher.handle(inbound("v1", payload=f"ap:{ap}:ok")),
                         rt.dispatcher.handle(inbound("v2", payload=f"ap:{ap}:ok")))
    decided = actions(rt, "approval.decided")
    assert len(decided) == 1
    loser = "v2" if decided[0].actor_id == ids["vp1"] else "v1"
    assert "already approved" in ch.texts(loser)[-1] or "đã được" in ch.texts(loser)[-1]


async def test_forged_payloads_are_refused_and_audited(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(inbound("t1", payload=f"ap:{ap}:ok"))  # the requester herself
    await rt.dispatcher.handle(inbound("x1", payload=f"ap:{ap}:ok"))  # a principal of another school
    await rt.dispatcher.handle(inbound("t1", payload="ap:99999:ok"))
    await rt.dispatcher.handle(inbound("t1", payload="ap:1:ok:extra"))
    assert status(rt, ap) == "pending"
    reasons = [e.details.get("reason") for e in actions(rt, "approval.refused")]
    assert reasons.count("role") == 1 and "school" in reasons and "unknown" in reasons and "malformed" in reasons


async def test_inactive_person_cannot_decide(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])

    def retire(s):
        p = s.get(Person, ids["principal"])
        p.status = PersonStatus.RETIRED
        s.add(p)

    rt.db.run_sync(retire)
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "pending"
    assert ch.sent[-1].reply.ask_contact  # treated as not linked


async def test_two_stage_secretary_then_board_head(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="secretary"), StageSpec(role="board_head")])
    assert not [o for o in ch.sent if o.chat_id == "b1"]
    await rt.dispatcher.handle(inbound("b1", payload=f"ap:{ap}:ok"))  # not their stage yet
    assert status(rt, ap) == "pending"
    await rt.dispatcher.handle(inbound("s1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "pending"
    assert [o for o in ch.sent if o.chat_id == "b1" and o.reply.buttons]
    await rt.dispatcher.handle(inbound("s1", payload=f"ap:{ap}:ok"))  # secretary can't do stage 2
    await rt.dispatcher.handle(inbound("b1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "approved"
    assert len(actions(rt, "approval.decided")) == 2


async def test_named_person_stage(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(person_id=ids["vp2"])])
    await rt.dispatcher.handle(inbound("v1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "pending"
    await rt.dispatcher.handle(inbound("v2", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "approved"


async def test_delegation_routes_inside_range_and_back_after(env):
    rt, ch, ids, clock = env
    h = rt.dispatcher.handle
    await h(inbound("p1", command="uyquyen"))
    await h(inbound("p1", payload=f"c:p{ids['vp1']}"))
    await h(inbound("p1", text="hôm nay"))
    await h(inbound("p1", payload="c:yes"))
    assert any("Trần Văn Đức" in t for t in ch.texts("v1"))  # the delegate is told
    ap1 = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    assert [o for o in ch.sent if o.chat_id == "v1" and o.reply.buttons and f"#{ap1}" in o.reply.text]
    assert not [o for o in ch.sent if o.chat_id == "p1" and f"ap:{ap1}:ok" in str(o.reply.buttons)]
    await h(inbound("v1", payload=f"ap:{ap1}:ok"))
    stage = rt.db.run_sync(lambda s: s.exec(select(ApprovalStage).where(ApprovalStage.approval_id == ap1)).one())
    assert stage.by_delegation and stage.decided_by == ids["vp1"]
    # The vice principal got no other rights: a stage for the principal created tomorrow is not theirs.
    clock.advance(days=1)
    ap2 = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await h(inbound("v1", payload=f"ap:{ap2}:ok"))
    assert status(rt, ap2) == "pending"
    assert [o for o in ch.sent if o.chat_id == "p1" and f"ap:{ap2}:ok" in str(o.reply.buttons)]


async def test_end_delegation_early_returns_pending_to_principal(env):
    rt, ch, ids, _ = env
    h = rt.dispatcher.handle
    for step in (dict(command="uyquyen"), dict(payload=f"c:p{ids['vp2']}"), dict(text="hôm nay"),
                 dict(payload="c:yes")):
        await h(inbound("p1", **step))
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    d_id = rt.db.run_sync(lambda s: s.exec(text("SELECT id FROM delegation")).scalar())
    await h(inbound("p1", command="uyquyen"))
    await h(inbound("p1", payload=f"c:end{d_id}"))
    await h(inbound("v2", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "pending"
    await h(inbound("p1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "approved"


async def test_reminder_then_escalation_once_across_restart(settings, env, start_runtime):
    rt, ch, ids, clock = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="board_head")])
    clock.advance(minutes=settings.approval_remind_after_minutes + 1)
    await rt.dispatcher.run_unit(approvals.tick)
    await rt.dispatcher.run_unit(approvals.tick)
    assert len(actions(rt, "approval.reminded")) == 1
    # restart: a fresh runtime on the same database
    rt2 = await start_runtime()
    ch2 = rt2.test_channel
    await rt2.dispatcher.run_unit(approvals.tick)
    assert len(actions(rt2, "approval.reminded")) == 1
    clock.advance(minutes=settings.approval_escalate_after_minutes)
    await rt2.dispatcher.run_unit(approvals.tick)
    await rt2.dispatcher.run_unit(approvals.tick)
    esc = actions(rt2, "approval.escalated")
    assert len(esc) == 1 and esc[0].details["to"] == [ids["principal"]]
    assert [o for o in ch2.sent if o.chat_id == "p1" and o.reply.buttons]
    await rt2.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:ok"))  # the escalated-to may decide
    assert status(rt2, ap) == "approved"
    await rt2.stop()  # the outbox clean-up and the units in flight finish, connections close


async def test_pending_list_oldest_first(env):
    rt, ch, ids, clock = env
    a1 = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    clock.advance(minutes=5)
    a2 = await request(rt, ids["secretary"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(inbound("p1", command="choduyet"))
    texts = ch.texts("p1")[-3:]
    assert f"#{a1}" in texts[1] and f"#{a2}" in texts[2]
    await rt.dispatcher.handle(inbound("t1", command="choduyet"))
    assert "#" not in ch.texts("t1")[-1]


async def test_note_is_added_to_the_card(env):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:note"))
    await rt.dispatcher.handle(inbound("p1", text="Cần thêm thời gian"))
    assert "Cần thêm thời gian" in ch.edits[-1][1].text
    assert status(rt, ap) == "pending"


async def test_audit_verify_detects_tampering(env, settings):
    rt, ch, ids, _ = env
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:ok"))
    env_vars = {**os.environ, "DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.effective_database_url}
    ok = subprocess.run([sys.executable, str(ROOT / "main.py"), "audit-verify"], env=env_vars, cwd=str(ROOT),
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    target = rt.db.run_sync(lambda s: s.exec(select(AuditEvent).where(AuditEvent.action == "approval.decided")).one())

    def tamper(s):
        s.execute(text("UPDATE audit_event SET subject = 'approval:999' WHERE id = :i"), {"i": target.id})

    rt.db.run_sync(tamper)
    bad = subprocess.run([sys.executable, str(ROOT / "main.py"), "audit-verify"], env=env_vars, cwd=str(ROOT),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"#{target.id}" in bad.stdout


def test_payload_parsing_is_strict():
    assert approvals.parse_payload("ap:12:ok") == (12, "ok")
    for bad in ("ap:12", "ap:x:ok", "ap:12:delete", "m:12:ok", "ap:-1:ok", "ap:1234567890123:ok", "", None):
        assert approvals.parse_payload(bad) is None
    assert len(approvals.payload(10**11, "note").encode()) <= 64


def test_escalation_window_setting_validated():
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="APPROVAL_ESCALATE"):
        load_settings(approval_remind_after_minutes=60, approval_escalate_after_minutes=30)


_ = timedelta


# -- an approver who links later (issue #20) ------------------------------------------------------
PRINCIPAL_PHONE = "+84912345001"
VP_PHONE = "+84912345002"


@pytest.fixture
def late(runtime):
    """A school whose principal and one vice principal are on the staff list but have not linked yet."""
    from storage.people import new_invite

    def seed(s):
        school = make_school(s)
        ids = {
            "teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="t1").id,
            "principal": make_person(s, school, "Trần Văn Đức", ["principal"], phone=PRINCIPAL_PHONE).id,
            "vp": make_person(s, school, "Lê Thị Hoa", ["vice_principal"], phone=VP_PHONE).id,
            "it": make_person(s, school, "Đặng Minh Khoa", ["it"], link="it1").id,
            "board_head": make_person(s, school, "Hoàng Minh Tuấn", ["board_head"], link="b1").id,
        }
        ids["code"] = new_invite(s, person=s.get(Person, ids["principal"]), ttl=timedelta(days=3))
        return ids

    ids = runtime.db.run_sync(seed)
    return runtime, runtime.test_channel, ids


def _share_own_number(user: str, phone: str, **kw):
    from bot.core import Contact

    return inbound(user, contact=Contact(phone=phone, user_id=user), **kw)


def _cards(sent, ap: int) -> list:
    return [o for o in sent if f"ap:{ap}:ok" in str(o.reply.buttons)]


async def test_a_request_made_before_the_principal_links_reaches_them_when_they_link(late):
    rt, ch, ids = late
    ap1 = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    told = ch.texts("t1")[-1]
    assert f"#{ap1}" in told and "đang chờ Hiệu trưởng liên kết tài khoản" in told
    assert "chưa có người có thẩm quyền" not in told
    it_msgs = ch.texts("it1")
    assert len(it_msgs) == 1 and "Trần Văn Đức" in it_msgs[0] and "Hiệu trưởng" in it_msgs[0]
    assert "python main.py invite" in it_msgs[0] and PRINCIPAL_PHONE not in it_msgs[0]
    ap2 = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    assert "đang chờ Hiệu trưởng" in ch.texts("t1")[-1]
    assert len(ch.texts("it1")) == 1  # told once, however many requests wait
    assert not [o for o in ch.sent if o.chat_id == "p1"]

    await rt.dispatcher.handle(_share_own_number("p1", PRINCIPAL_PHONE))
    to_principal = [o for o in ch.sent if o.chat_id == "p1"]
    assert "Trần Văn Đức" in to_principal[0].reply.text  # the greeting first, then the cards, oldest first
    cards = [o for o in to_principal if o.reply.buttons and "ap:" in str(o.reply.buttons)]
    assert [f"#{ap1}" in cards[0].reply.text, f"#{ap2}" in cards[1].reply.text] == [True, True]
    assert len(cards) == 2 and len(_cards(ch.sent, ap1)) == 1 and len(_cards(ch.sent, ap2)) == 1
    assert "chờ anh/chị liên kết" in cards[0].reply.text
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap1}:ok"))  # the kept card's button works
    assert status(rt, ap1) == "approved" and status(rt, ap2) == "pending"
    assert "Trần Văn Đức" in ch.texts("t1")[-1]
    assert len(actions(rt, "identity.link_needed")) == 1


async def test_linking_again_or_a_second_channel_sends_no_card_twice(late):
    from storage.models import ChannelIdentity

    rt, ch, ids = late
    zalo = type(ch)(name="zalo_bot")
    rt.sender.register(zalo)
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(_share_own_number("p1", PRINCIPAL_PHONE))
    assert len(_cards(ch.sent, ap)) == 1
    await rt.dispatcher.handle(inbound("p1", command="start"))  # already linked
    await rt.dispatcher.handle(_share_own_number("p1", PRINCIPAL_PHONE))  # the same number again
    await rt.dispatcher.handle(inbound("z1", channel="zalo_bot", text=ids["code"]))  # a second channel
    linked = rt.db.run_sync(lambda s: {i.channel for i in s.exec(select(ChannelIdentity).where(
        ChannelIdentity.person_id == ids["principal"]))})
    assert linked == {"test", "zalo_bot"}
    await rt.dispatcher.run_unit(approvals.tick)
    from bot.engine import waiting

    await rt.dispatcher.run_unit(waiting.sweep)  # the scheduler's safety net finds nothing left either
    assert len(_cards(ch.sent + zalo.sent, ap)) == 1
    assert any("Trần Văn Đức" in t for t in zalo.texts("z1"))  # greeted there, no card


async def test_two_processes_linking_at_once_deliver_the_card_once(late, start_runtime):
    """The principal links on two channels at the same moment, each handled by another bot process
    on the same database: the kept card is claimed by one of them only (conditional update)."""
    from tests.helpers import RecordingChannel

    rt, ch, ids = late
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    rt2 = await start_runtime()
    channels = [ch, rt2.test_channel]
    for runtime in (rt, rt2):
        z = RecordingChannel(name="zalo_bot")
        runtime.sender.register(z)
        channels.append(z)
    await asyncio.gather(rt.dispatcher.handle(_share_own_number("p1", PRINCIPAL_PHONE)),
                         rt2.dispatcher.handle(inbound("z1", channel="zalo_bot", text=ids["code"])))
    from bot.engine import waiting

    await asyncio.gather(rt.dispatcher.run_unit(waiting.sweep), rt2.dispatcher.run_unit(waiting.sweep))
    sent = [o for c in channels for o in c.sent]
    assert len(_cards(sent, ap)) == 1
    await rt2.dispatcher.handle(inbound("z1", channel="zalo_bot", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "approved"


async def test_an_unlinked_delegate_gets_the_card_when_she_links_and_the_principal_meanwhile(late):
    """The principal (linked) delegated to a vice principal who has not linked: the principal gets the
    card too, so nothing waits; the delegate's card reaches her when she links, and she may decide."""
    rt, ch, ids = late
    await rt.dispatcher.handle(_share_own_number("p1", PRINCIPAL_PHONE))
    for step in (dict(command="uyquyen"), dict(payload=f"c:p{ids['vp']}"), dict(text="hôm nay"),
                 dict(payload="c:yes")):
        await rt.dispatcher.handle(inbound("p1", **step))
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    assert len([o for o in _cards(ch.sent, ap) if o.chat_id == "p1"]) == 1
    assert not any("đang chờ" in t for t in ch.texts("t1"))
    await rt.dispatcher.handle(_share_own_number("v1", VP_PHONE))
    assert len([o for o in _cards(ch.sent, ap) if o.chat_id == "v1"]) == 1
    await rt.dispatcher.handle(inbound("v1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "approved"
    stage = rt.db.run_sync(lambda s: s.exec(select(ApprovalStage).where(ApprovalStage.approval_id == ap)).one())
    assert stage.by_delegation and stage.decided_by == ids["vp"]


async def test_an_escalation_to_a_principal_not_linked_yet_waits_for_the_link(late, settings, clock):
    rt, ch, ids = late
    ap = await request(rt, ids["teacher"], [StageSpec(role="board_head")])
    assert _cards(ch.sent, ap)[0].chat_id == "b1"
    clock.advance(minutes=settings.approval_escalate_after_minutes + 1)
    await rt.dispatcher.run_unit(approvals.tick)
    await rt.dispatcher.run_unit(approvals.tick)
    assert [e.details["to"] for e in actions(rt, "approval.escalated")] == [[ids["principal"]]]
    assert len(ch.texts("it1")) == 1 and "Trần Văn Đức" in ch.texts("it1")[0]
    await rt.dispatcher.handle(_share_own_number("p1", PRINCIPAL_PHONE))
    cards = [o for o in _cards(ch.sent, ap) if o.chat_id == "p1"]
    assert len(cards) == 1 and "Escalated" not in cards[0].reply.text  # in Vietnamese
    assert "chờ quá lâu" in cards[0].reply.text or "Chuyển lên" in cards[0].reply.text
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap}:ok"))
    assert status(rt, ap) == "approved"


async def test_the_menu_and_choduyet_show_what_waits_for_the_principal(late):
    rt, ch, ids = late
    ap = await request(rt, ids["teacher"], [StageSpec(role="principal")])
    await rt.dispatcher.handle(_share_own_number("p1", PRINCIPAL_PHONE))
    await rt.dispatcher.handle(inbound("p1", command="menu"))
    menu = ch.sent[-1].reply
    first = menu.buttons[0][0]
    assert first.payload == "m:choduyet" and first.label == "📋 Chờ anh/chị duyệt (1)"
    await rt.dispatcher.handle(inbound("p1", payload="m:choduyet"))
    assert f"#{ap}" in ch.sent[-1].reply.text and f"ap:{ap}:ok" in str(ch.sent[-1].reply.buttons)
    await rt.dispatcher.handle(inbound("p1", command="choduyet"))
    assert f"#{ap}" in ch.sent[-1].reply.text
    await rt.dispatcher.handle(inbound("t1", command="menu"))
    assert all(b.payload != "m:choduyet" for row in ch.sent[-1].reply.buttons for b in row)
