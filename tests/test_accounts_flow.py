"""Accounts end to end through the real python-telegram-bot and the fake Bot API: password resets
(temporary password shown once, deleted from both chats after the school's time, stored and logged
nowhere), BGH approval for sensitive systems, refusal of someone else's account, revocation
checklists through to completion, the revoked person's identities, locking and unlocking."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, col, select

from bot.flows.accounts.models import Account, AccountReset, AccountStatus, Revocation, RevocationItem
from bot.i18n import Translator
from storage import audit
from storage.models import Approval, ChannelIdentity, Person, PersonStatus, School
from tests.conftest import FixedClock
from tests.fakes.tg_harness import TgHarness, payloads
from tests.helpers import make_person, make_school

TR = Translator("vi")
T, HOA, P, IT = 2001, 2002, 2003, 2004  # teacher, other teacher, principal, IT
CODE = re.compile(r"<code>([^<]+)</code>")
NOT_LINKED = ("You are not linked to a school yet, so I cannot help with that. Tap the button below to share "
              "your phone number, or send the link code the school office gave you.")


def _seed(s, delete_minutes: int | None = None):
    settings = {"accounts": {"password_delete_minutes": delete_minutes}} if delete_minutes else {}
    school = make_school(s, email_suffix="@thtt.edu.vn", settings=settings)
    t = make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 1")
    o = make_person(s, school, "Lê Thị Hoa", ["teacher"], unit="Tổ 2")
    p = make_person(s, school, "Trần Văn Đức", ["principal"])
    it = make_person(s, school, "Đặng Minh Khoa", ["it"])
    accs = {}
    for key, person, system, user in [("t_mail", t, "email", "vannt@thtt.edu.vn"), ("t_smas", t, "school_mgmt", "vannt"),
                                      ("o_mail", o, "email", "hoalt@thtt.edu.vn"), ("o_db", o, "sector_db", "hoalt"),
                                      ("o_portal", o, "portal", "hoa.le")]:
        a = Account(school_id=school.id, person_id=person.id, system=system, username=user)
        s.add(a)
        s.flush()
        accs[key] = a.id
    return {"school": school.id, "t": t.id, "o": o.id, "p": p.id, "it": it.id, **accs}


async def _start(start_telegram, delete_minutes: int | None = None, **options) -> TgHarness:
    """The shared bot (``start_telegram``), its school and the four people linked to their chats."""
    h = await start_telegram(**options)
    ids = h.seed(lambda s: _seed(s, delete_minutes))
    for key, uid in (("t", T), ("o", HOA), ("p", P), ("it", IT)):
        h.link(ids[key], uid)
    h.ids = ids  # type: ignore[attr-defined]
    return h


def _scan_database(tg: TgHarness, secret: str) -> list[str]:
    """Every value of every column of every table that contains ``secret`` (should be none)."""
    found: list[str] = []

    def go(s):
        for table in SQLModel.metadata.sorted_tables:
            for row in s.execute(sa_select(table)).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    text = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict | list) \
                        else str(value)
                    if secret in text:
                        found.append(f"{table.name}.{column}")
    tg.seed(go)
    return found


def _about(tg: TgHarness, chat: int, text: str) -> list:
    """The bot's messages in a chat mentioning ``text`` (other workflows' reminders may share the chat)."""
    return [m for m in tg.fake.bot_messages(chat) if text in m.text]


def _reset_card(tg: TgHarness, prefix: str):
    msgs = [m for m in tg.fake.bot_messages(IT) if any(p.startswith(prefix) for p in payloads(m))]
    assert msgs, f"no card with {prefix} for IT"
    return msgs[-1]


# ---------------------------------------------------------------------------------------------
async def test_reset_to_temporary_password_that_disappears(start_telegram, caplog):
    caplog.set_level(logging.DEBUG)
    # The core records when a message was sent by the wall clock, so the test clock starts now.
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    tg = await _start(start_telegram, clock=clock, delete_minutes=5)
    ids = tg.ids  # type: ignore[attr-defined]
    menu = (await tg.command(T, "taikhoan"))[-1]
    assert f"c:a{ids['t_mail']}" in payloads(menu) and f"c:a{ids['t_smas']}" in payloads(menu)
    assert f"c:a{ids['o_mail']}" not in payloads(menu)  # only her own accounts
    await tg.tap(T, f"c:a{ids['t_mail']}")
    done = await tg.tap(T, "c:send")
    assert any(TR.t("Request #{id} was sent to the IT team. The temporary password will come to you here, "
                    "privately, and disappear after {n} minutes.", id=1, n=5) == m.text for m in done)
    card = _reset_card(tg, "acc:g:")
    assert "vannt@thtt.edu.vn" in card.text and "Nguyễn Thị Vân" in card.text
    assert "acc:m:1" in payloads(card)

    shown = await tg.tap(IT, "acc:g:1")
    to_it = next(m for m in shown if CODE.search(m.html))
    password = CODE.search(to_it.html).group(1)  # type: ignore[union-attr]
    owner_msg = await tg.wait_for_message(T, predicate=lambda m: password in m.text)
    assert to_it.protected and owner_msg.protected
    assert "vannt@thtt.edu.vn" in owner_msg.text
    assert "003 Điều 5.2" in owner_msg.text and "002 Điều 10.1.a" in owner_msg.text
    # strong: 12 characters, upper and lower case, digits, a symbol; never the same twice
    assert len(password) == 12 and re.search(r"[A-Z]", password) and re.search(r"[a-z]", password)
    assert re.search(r"[2-9]", password) and re.search(r"[@#$%!?*]", password)
    # the IT card now shows who handled it, without buttons
    await tg.fake.wait_until(lambda: card.edits, 5, "the IT card to be edited")
    assert not payloads(tg.fake.message(IT, card.message_id))
    assert "Đặng Minh Khoa" in tg.fake.message(IT, card.message_id).text
    second = await tg.tap(IT, "acc:g:1", message_id=card.message_id)
    assert second and all(password not in m.text for m in second) and not any(CODE.search(m.html) for m in second)

    # still there after 4 minutes; gone from both chats after the configured 5
    clock.advance(minutes=4)
    await tg.tick()
    assert not tg.fake.calls_to("deleteMessage")
    assert not owner_msg.deleted and not to_it.deleted
    clock.advance(minutes=2)
    await tg.tick()
    deletions = {(int(c.params["chat_id"]), int(c.params["message_id"]))
                 for c in tg.fake.calls_to("deleteMessage")}
    assert deletions == {(T, owner_msg.message_id), (IT, to_it.message_id)}
    assert owner_msg.deleted and to_it.deleted
    await tg.tick()  # never deleted twice
    assert len(tg.fake.calls_to("deleteMessage")) == 2

    # who reset what, when — and the password nowhere: no column, no conversation, no audit, no log
    ev = tg.seed(lambda s: list(audit.events(s, action="account.reset_done")))
    assert len(ev) == 1 and ev[0].actor_id == ids["it"] and ev[0].details["method"] == "temporary"
    assert ev[0].details["username"] == "vannt@thtt.edu.vn" and ev[0].details["delete_after_s"] == 300
    assert _scan_database(tg, password) == []
    assert tg.seed(lambda s: s.get(AccountReset, 1).status) == "done"
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG logging was really on
    assert [r.name for r in caplog.records if password in r.getMessage()] == []
    assert password not in caplog.text


async def test_someone_elses_account_is_refused_even_forged(start_telegram, clock):
    tg = await _start(start_telegram)
    ids = tg.ids  # type: ignore[attr-defined]
    await tg.command(T, "taikhoan")
    # Her client sends a button value naming Lê Thị Hoa's account: refused, nothing recorded.
    refused = await tg.tap(T, f"c:a{ids['o_mail']}")
    assert [m.text for m in refused] == [TR.t(
        "You can only ask for a reset of your own accounts. Sharing or using someone else's account is not "
        "allowed (002 Điều 10.1.a).")]
    refused = await tg.tap(T, "c:a99999")
    assert len(refused) == 1 and "002 Điều 10.1.a" in refused[0].text
    assert tg.seed(lambda s: s.exec(select(AccountReset)).all()) == []
    ev = tg.seed(lambda s: list(audit.events(s, action="account.reset_refused")))
    assert [e.details["reason"] for e in ev] == ["not_owner", "unknown"]
    # typed part of another person's user name matches nothing of hers
    await tg.send(T, "hoalt")
    assert tg.seed(lambda s: s.exec(select(AccountReset)).all()) == []
    # IT buttons are for IT only
    await tg.tap(T, f"c:a{ids['t_mail']}")
    await tg.tap(T, "c:send")
    forged = await tg.tap(T, "acc:g:1")
    assert [m.text for m in forged] == [TR.t("Only the IT team of the school can do this.")]
    assert not any(CODE.search(m.html) for m in tg.fake.bot_messages(T))
    assert tg.seed(lambda s: s.get(AccountReset, 1).status) == "waiting"


async def test_sensitive_system_needs_the_principal_then_it_resets_by_other_means(start_telegram, clock):
    tg = await _start(start_telegram)
    ids = tg.ids  # type: ignore[attr-defined]
    await tg.command(T, "taikhoan")
    await tg.tap(T, f"c:a{ids['t_smas']}")
    await tg.tap(T, "c:send")
    ap = tg.seed(lambda s: s.exec(select(Approval)).one())
    assert ap.kind == "account_reset"
    await tg.wait_for_message(P, contains=f"#{ap.id}")
    assert not [m for m in tg.fake.bot_messages(IT) if "acc:g:1" in payloads(m)]  # not before approval
    await tg.tap(P, f"ap:{ap.id}:ok")
    card = await tg.wait_for_message(IT, predicate=lambda m: "acc:m:1" in payloads(m))
    assert TR.t("✅ Approved by {name} (sensitive system)", name="Trần Văn Đức") in card.text
    done = await tg.tap(IT, "acc:m:1")
    assert any("1" in m.text for m in done)
    told = await tg.wait_for_message(T, contains="003 Điều 5.2")
    assert "vannt" in told.text and not CODE.search(told.html)
    again = await tg.tap(IT, "acc:g:1", message_id=card.message_id)
    assert "Đặng Minh Khoa" in again[0].text and not CODE.search(again[0].html)
    reset = tg.seed(lambda s: s.get(AccountReset, 1))
    assert (reset.status, reset.method, reset.handled_by) == ("done", "manual", ids["it"])


async def test_rejected_sensitive_reset_never_reaches_it(start_telegram, clock):
    tg = await _start(start_telegram)
    ids = tg.ids  # type: ignore[attr-defined]
    await tg.command(T, "taikhoan")
    await tg.tap(T, f"c:a{ids['t_smas']}")
    await tg.tap(T, "c:send")
    ap = tg.seed(lambda s: s.exec(select(Approval)).one())
    await tg.tap(P, f"ap:{ap.id}:no")
    await tg.tap(P, "c:skip")
    assert tg.seed(lambda s: s.get(AccountReset, 1).status) == "rejected"
    assert not [m for m in tg.fake.bot_messages(IT) if "acc:g:1" in payloads(m)]


async def test_revocation_checklist_to_completion(start_telegram, clock):
    tg = await _start(start_telegram)
    ids = tg.ids  # type: ignore[attr-defined]
    await tg.command(P, "nhansu")
    await tg.send(P, "le thi HOA")
    await tg.tap(P, "c:left")
    await tg.tap(P, "c:yes")
    # The person's record stays, with its new status; her identity stops at once.
    hoa = tg.seed(lambda s: s.get(Person, ids["o"]))
    assert hoa.status == PersonStatus.LEFT and hoa.status_changed_at is not None
    assert not tg.seed(lambda s: s.exec(select(ChannelIdentity).where(
        ChannelIdentity.person_id == ids["o"], col(ChannelIdentity.active).is_(True))).all())
    reply = await tg.command(HOA, "taikhoan")
    assert [m.text for m in reply] == [TR.t(NOT_LINKED)]
    reply = await tg.send(HOA, "xin chào")
    assert [m.text for m in reply] == [TR.t(NOT_LINKED)]

    card = await tg.wait_for_message(IT, predicate=lambda m: any(p.startswith("acc:v:") for p in payloads(m)))
    items = tg.seed(lambda s: s.exec(select(RevocationItem).order_by(col(RevocationItem.id))).all())
    assert len(items) == 3 and payloads(card) == [f"acc:v:{i.id}" for i in items]
    assert "hoalt@thtt.edu.vn" in card.text and "hoa.le" in card.text
    progress = await tg.wait_for_message(P, contains=TR.t("Progress: {done}/{total} revoked.", done=0, total=3))
    assert not payloads(progress)

    # A teacher cannot tick (a forged callback on one of her own messages); IT is reminded the
    # next working day, once
    await tg.command(T, "menu")
    assert (await tg.tap(T, f"acc:v:{items[0].id}"))[0].text == TR.t("Only the IT team of the school can do "
                                                                     "this.")
    await tg.tick()
    before = len(_about(tg, IT, "Lê Thị Hoa"))
    await tg.tick()
    assert len(_about(tg, IT, "Lê Thị Hoa")) == before == 1  # nothing new the same day
    clock.advance(days=1)  # Tuesday 24/11/2026 is a public holiday (Vietnam Cultural Day): no reminder
    await tg.tick()
    assert not [m for m in tg.fake.bot_messages(IT) if m.text.startswith("⏰")]
    clock.advance(days=1)  # Wednesday
    await tg.tick()
    await tg.tick()
    reminders = [m for m in tg.fake.bot_messages(IT) if m.text.startswith("⏰")]
    assert len(reminders) == 1 and payloads(reminders[0]) == payloads(card)

    await tg.tap(IT, f"acc:v:{items[0].id}", message_id=card.message_id)
    await tg.fake.wait_until(lambda: progress.edits, 5, "the principal's card to be edited")
    assert TR.t("Progress: {done}/{total} revoked.", done=1, total=3) in tg.fake.message(P, progress.message_id).text
    again = await tg.tap(IT, f"acc:v:{items[0].id}", message_id=reminders[0].message_id)
    assert "Đặng Minh Khoa" in again[0].text
    await tg.tap(IT, f"acc:v:{items[1].id}", message_id=card.message_id)
    last = await tg.tap(IT, f"acc:v:{items[2].id}", message_id=reminders[0].message_id)
    assert any(TR.t("✅ Checklist #{id} is complete: every account of {name} is revoked.", id=1,
                    name="Lê Thị Hoa") == m.text for m in last)
    await tg.wait_for_message(P, contains=TR.t("✅ Every account of {name} is revoked (checklist #{id}).",
                                               name="Lê Thị Hoa", id=1))
    assert not payloads(tg.fake.message(IT, card.message_id))
    assert not payloads(tg.fake.message(IT, reminders[0].message_id))
    accs = tg.seed(lambda s: s.exec(select(Account).where(Account.person_id == ids["o"])).all())
    assert {a.status for a in accs} == {AccountStatus.REVOKED} and all(a.revoked_by == ids["it"] for a in accs)
    assert tg.seed(lambda s: s.get(Revocation, 1).closed_at) is not None
    sent = len(_about(tg, IT, "Lê Thị Hoa"))
    clock.advance(days=1)
    await tg.tick()
    assert len(_about(tg, IT, "Lê Thị Hoa")) == sent  # complete: no more reminders
    actions = [e.action for e in tg.seed(lambda s: list(audit.events(s))) if e.action.startswith(("account",
                                                                                                  "staff"))]
    assert actions.count("account.revoked") == 3 and "staff.status_changed" in actions
    assert "account.revocation_opened" in actions and "account.revocation_closed" in actions
    assert tg.seed(lambda s: audit.verify(s)).ok


async def test_staff_import_opens_the_checklist(start_telegram, tmp_path):
    from storage.staff_import import import_staff_file

    tg = await _start(start_telegram)
    ids = tg.ids  # type: ignore[attr-defined]
    def give_phone(s):
        hoa = s.get(Person, ids["o"])
        hoa.phone = "+84912000002"
        s.add(hoa)

    tg.seed(give_phone)
    f = tmp_path / "staff.csv"
    f.write_text("Họ và tên,Vai trò,Số điện thoại,Trạng thái\nLê Thị Hoa,Giáo viên,0912000002,Chuyển công tác\n",
                 encoding="utf-8")
    report = import_staff_file(tg.db, str(f), school_name=None, dry_run=False, tr=TR)
    assert report.ok, report.render(TR)
    assert [m.text for m in await tg.send(HOA, "xin chào")] == [TR.t(NOT_LINKED)]
    await tg.tick()
    card = await tg.wait_for_message(IT, predicate=lambda m: any(p.startswith("acc:v:") for p in payloads(m)))
    assert len(payloads(card)) == 3 and TR.t("Transferred to another school") in card.text
    await tg.wait_for_message(P, contains=TR.t("Progress: {done}/{total} revoked.", done=0, total=3))
    # (the import ran on the wall clock, earlier than the test clock: a reminder may follow the card)
    assert len([m for m in _about(tg, IT, "Lê Thị Hoa") if not m.text.startswith("⏰")]) == 1
    sent = len(_about(tg, IT, "Lê Thị Hoa"))
    await tg.tick()
    assert len(_about(tg, IT, "Lê Thị Hoa")) == sent


async def test_lock_and_unlock(start_telegram, clock):
    tg = await _start(start_telegram)
    ids = tg.ids  # type: ignore[attr-defined]
    await tg.command(IT, "quanlytk")
    await tg.send(IT, "nguyen thi van")
    await tg.tap(IT, f"c:l{ids['t_mail']}")
    await tg.send(IT, "Đăng nhập lạ từ nước ngoài")
    owner = await tg.wait_for_message(T, contains="Đăng nhập lạ từ nước ngoài")
    assert "vannt@thtt.edu.vn" in owner.text
    await tg.wait_for_message(P, contains="Đăng nhập lạ từ nước ngoài")
    acc = tg.seed(lambda s: s.get(Account, ids["t_mail"]))
    assert acc.status == AccountStatus.LOCKED and acc.locked_by == ids["it"]
    # a locked account cannot be reset by its owner
    menu = (await tg.command(T, "taikhoan"))[-1]
    assert f"c:a{ids['t_mail']}" not in payloads(menu) and "🔒" in menu.text
    forged = await tg.tap(T, f"c:a{ids['t_mail']}")
    assert "IT" in forged[0].text or "CNTT" in forged[0].text
    await tg.command(T, "huy")
    # someone else's account cannot be locked through this person's card
    await tg.tap(IT, f"c:l{ids['o_mail']}")
    assert tg.seed(lambda s: s.get(Account, ids["o_mail"]).status) == AccountStatus.ACTIVE
    await tg.tap(IT, f"c:u{ids['t_mail']}")
    await tg.wait_for_message(T, contains="/taikhoan")
    assert tg.seed(lambda s: s.get(Account, ids["t_mail"]).status) == AccountStatus.ACTIVE
    actions = [e.action for e in tg.seed(lambda s: list(audit.events(s)))]
    assert actions.count("account.locked") == 1 and actions.count("account.unlocked") == 1
    assert "account.action_refused" in actions
    # a teacher has no access to the account list
    assert (await tg.command(T, "quanlytk"))[0].text == TR.t("This workflow is not available for your role.")


@pytest.fixture
def _school(db):
    return db.run_sync(lambda s: _seed(s))


def test_import_accounts_refuses_passwords_and_shared_names(db, tmp_path, _school):
    from bot.flows.accounts.importer import import_accounts_file

    ids = _school
    def give_phones(s):
        for key, phone in (("t", "+84912000001"), ("p", "+84912000003")):
            person = s.get(Person, ids[key])
            person.phone = phone
            s.add(person)

    db.run_sync(give_phones)
    bad = tmp_path / "pw.csv"
    bad.write_text("Họ và tên,SĐT,Hệ thống,Tên đăng nhập,Mật khẩu\nNguyễn Thị Vân,0912000001,CSDL,vannt,123456\n",
                   encoding="utf-8")
    report = import_accounts_file(db, str(bad), school_name=None, dry_run=False, tr=TR)
    assert [p.code for p in report.problems] == ["password_column"]
    f = tmp_path / "acc.csv"
    f.write_text("Họ và tên,SĐT,Hệ thống,Tên đăng nhập\n"
                 "Nguyễn Thị Vân,0912000001,CSDL ngành,vannt.db\n"
                 "Trần Văn Đức,0912 000 003,Cổng thông tin điện tử,ductv\n"
                 "Trần Văn Đức,0912000003,Thư điện tử,hoalt@thtt.edu.vn\n"
                 "Nguyễn Thị Vân,0912000001,Phần mềm kế toán,vannt\n", encoding="utf-8")
    report = import_accounts_file(db, str(f), school_name=None, dry_run=False, tr=TR)
    assert [p.code for p in report.problems] == ["username_taken", "system_unknown"]
    assert db.run_sync(lambda s: len(s.exec(select(Account)).all())) == 5  # nothing written
    f.write_text("Họ và tên,SĐT,Hệ thống,Tên đăng nhập\n"
                 "Nguyễn Thị Vân,0912000001,CSDL ngành,vannt.db\n"
                 "Trần Văn Đức,0912 000 003,Cổng thông tin điện tử,ductv\n"
                 "Nguyễn Thị Vân,0912000001,smas,vannt\n", encoding="utf-8")
    dry = import_accounts_file(db, str(f), school_name=None, dry_run=True, tr=TR)
    assert dry.ok and len(dry.added) == 2 and dry.unchanged == 1
    assert db.run_sync(lambda s: len(s.exec(select(Account)).all())) == 5
    report = import_accounts_file(db, str(f), school_name=None, dry_run=False, tr=TR)
    assert report.ok and len(report.added) == 2
    got = db.run_sync(lambda s: {(a.person_id, a.system, a.username) for a in s.exec(select(Account))})
    assert (ids["t"], "sector_db", "vannt.db") in got and (ids["p"], "portal", "ductv") in got
    assert db.run_sync(lambda s: s.get(School, ids["school"]).name)


def test_demo_seed_is_idempotent(db):
    from bot.demo import create_demo_school
    from bot.flows.accounts.cards import demo_seed

    def count(s):
        return len(s.exec(select(Account)).all())

    db.run_sync(lambda s: create_demo_school(s, extra_seeders=[demo_seed]))
    first = db.run_sync(count)
    db.run_sync(lambda s: create_demo_school(s, extra_seeders=[demo_seed]))
    assert db.run_sync(count) == first > 15

    def check(s):
        for p in s.exec(select(Person)).all():
            mails = [a.username for a in s.exec(select(Account).where(Account.person_id == p.id,
                                                                        Account.system == "email"))]
            assert mails == [p.email] and p.email and p.email.endswith("@demo-ngocthuy.edu.vn")
    db.run_sync(check)
    van = db.run_sync(lambda s: s.exec(select(Person).where(Person.full_name == "Nguyễn Thị Vân")).one())
    assert van.email == "vannt@demo-ngocthuy.edu.vn"


def test_cli_account_systems_and_import_accounts(settings, db, tmp_path, _school):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from bot.flows.accounts.service import systems

    root = Path(__file__).resolve().parent.parent

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TELEGRAM_", "ZALO_", "WEB_", "DATABASE_URL", "DATA_DIR"))}
        env.update(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=settings.database_url, LOG_LEVEL="WARNING",
                   PYTHONPATH=str(root))
        return subprocess.run([sys.executable, str(root / "main.py"), *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    res = cli("account-systems", "--add", "Phần mềm kế toán MISA", "--key", "misa")
    assert res.returncode == 0, res.stderr
    res = cli("account-systems", "--sensitive", "misa", "--not-sensitive", "sector_db")
    assert res.returncode == 0, res.stderr
    assert "misa: Phần mềm kế toán MISA" in res.stdout and TR.t("Sector database") in res.stdout
    got = {x.key: x.sensitive for x in systems(db.run_sync(lambda s: s.get(School, _school["school"])))}
    assert got == {"email": False, "school_mgmt": True, "sector_db": False, "equipment": False, "portal": False,
                   "misa": True}
    assert cli("account-systems", "--remove", "email").returncode == 1  # still has accounts
    f = tmp_path / "acc.csv"
    f.write_text("Họ và tên,Hệ thống,Tên đăng nhập\nLê Thị Hoa,Phần mềm kế toán MISA,hoa.misa\n", encoding="utf-8")
    res = cli("import-accounts", str(f))
    assert res.returncode == 0, res.stderr
    assert "hoa.misa" in res.stdout
    acc = db.run_sync(lambda s: s.exec(select(Account).where(Account.username == "hoa.misa")).one())
    assert (acc.person_id, acc.system) == (_school["o"], "misa")
    actions = [e.action for e in db.run_sync(lambda s: list(audit.events(s)))]
    assert actions.count("account.systems_changed") == 2 and "account.imported" in actions


async def test_owner_only_on_zalo_gets_no_password(runtime):
    """Zalo cannot delete messages: the password is shown to IT only, and the owner is told IT will
    hand it over; an IT member writing from Zalo cannot make one at all."""
    from tests.helpers import RecordingChannel, inbound

    rt = runtime
    web, zalo = RecordingChannel(name="web"), RecordingChannel(name="zalo_oa")
    rt.sender.register(web)
    rt.sender.register(zalo)
    def seed(s):
        ids = _seed(s)
        from storage.people import link_identity
        for key, channel, uid in (("t", "zalo_oa", "zt"), ("it", "web", "wi"), ("p", "web", "wp")):
            link_identity(s, person=s.get(Person, ids[key]), channel=channel, external_id=uid, chat_id=uid)
        link_identity(s, person=s.get(Person, ids["it"]), channel="zalo_oa", external_id="zi", chat_id="zi")
        return ids

    ids = rt.db.run_sync(seed)
    h = rt.dispatcher.handle
    await h(inbound("zt", channel="zalo_oa", command="taikhoan"))
    await h(inbound("zt", channel="zalo_oa", payload=f"c:a{ids['t_mail']}"))
    await h(inbound("zt", channel="zalo_oa", payload="c:send"))
    refused = await h(inbound("zi", channel="zalo_oa", payload="acc:g:1"))
    assert "Telegram" in refused[0].reply.text and not CODE.search(refused[0].reply.text)
    assert rt.db.run_sync(lambda s: s.get(AccountReset, 1).status) == "waiting"
    out = await h(inbound("wi", channel="web", payload="acc:g:1"))
    to_it = [o for o in out if o.chat_id == "wi" and CODE.search(o.reply.text)]
    assert len(to_it) == 1 and to_it[0].reply.protect and to_it[0].reply.delete_after == 600
    password = CODE.search(to_it[0].reply.text).group(1)  # type: ignore[union-attr]
    assert "Nguyễn Thị Vân" in to_it[0].reply.text  # give it in person
    to_owner = [o for o in zalo.sent if o.chat_id == "zt"]
    assert to_owner and all(password not in o.reply.text for o in zalo.sent)
    assert "003 Điều 5.2" in to_owner[-1].reply.text
    ev = rt.db.run_sync(lambda s: list(audit.events(s, action="account.reset_done")))
    assert ev[0].details["delivered"] == "in_person"
