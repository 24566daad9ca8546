"""Cards sent before an upgrade still work after it.

A card's buttons stay in people's chats for weeks; a tap sends back the payload exactly as the
version that drew the card wrote it. So the payload forms are a contract: the payloads below are
copied from what the version before the move to workflow packages (commit 23fb7c1) produced, and
each must still reach the handler of the same workflow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from bot.core import Registry
from bot.flows.footage.models import Camera, FootageRequest
from media.synth import make_archive
from storage.models import Approval

# (payload as the previous version wrote it, the module whose handler must receive it)
PAYLOADS_BEFORE_THE_UPGRADE = [
    # approval cards (bot/approvals.py: payload(approval.id, "ok" | "no" | "note"))
    ("ap:12:ok", "bot.handlers.approvals"),
    ("ap:12:no", "bot.handlers.approvals"),
    ("ap:12:note", "bot.handlers.approvals"),
    # footage (bot/flows/footage.py, bot/footage_jobs.py)
    ("fx:7:keep", "bot.flows.footage"),
    ("fx:7:retry", "bot.flows.footage"),
    ("fx:review", "bot.flows.footage"),
    # incidents (bot/incidents.py: payload(inc.id, action))
    *[(f"ic:31:{action}", "bot.flows.incidents")
      for action in ("ack", "done", "up", "cam", "lock", "files", "doc", "show")],
    # accounts (bot/accounts.py: a reset card and a revocation checklist)
    ("acc:g:4", "bot.flows.accounts"),
    ("acc:m:4", "bot.flows.accounts"),
    ("acc:v:19", "bot.flows.accounts"),
    # articles: review (bot/flows/articles_review.py) and the vote (bot/flows/articles_vote.py)
    *[(f"ar:5:{action}", "bot.flows.articles") for action in ("fwd", "head", "ret", "edit", "full", "pub", "rev")],
    ("av:2:5", "bot.flows.articles"),
    ("av:2:tb5", "bot.flows.articles"),
    # equipment: the monthly card, the officer's report card, a repair task (bot/equipment.py, equipment_repair.py)
    ("eqb:3:all", "bot.flows.equipment"),
    ("eqb:3:items", "bot.flows.equipment"),
    ("eqk:8:ok", "bot.flows.equipment"),
    ("eqk:8:no", "bot.flows.equipment"),
    ("eqr:6:ack", "bot.flows.equipment"),
    ("eqr:6:done", "bot.flows.equipment"),
    # the main menu (bot/handlers/menu.py: m:<flow name>, m:help)
    ("m:help", "bot.handlers.menu"),
    *[(f"m:{flow}", "bot.handlers.menu") for flow in (
        "accounts", "accounts_admin", "accounts_staff", "article_settings", "articles", "calendar", "delegation",
        "equipment", "equipment_repair", "equipment_report", "equipment_use", "footage", "incident", "outage",
        "profile")],
]

#: answers to the step in progress (bot/core.py: CHOICE = "c"), e.g. from /camera and /baiviet's settings
STEP_ANSWERS_BEFORE_THE_UPGRADE = ["c:today", "c:1", "c:send", "c:evidence", "c:cam3", "c:ap:all"]

REC_START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội; the test clock says 09:00


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry().discover()


@pytest.mark.parametrize(("payload", "module"), PAYLOADS_BEFORE_THE_UPGRADE)
def test_a_payload_of_the_previous_version_reaches_the_same_workflow(registry, payload, module):
    handler = registry.payload_handler(payload)
    assert handler is not None, f"nothing handles {payload!r} any more"
    where = handler.fn.__module__
    assert where == module or where.startswith(module + "."), f"{payload!r} goes to {where}, not {module}"
    if payload.startswith("m:") and payload != "m:help":
        assert payload[2:] in registry.flows, f"the menu button {payload!r} names a flow that is gone"


@pytest.mark.parametrize("payload", STEP_ANSWERS_BEFORE_THE_UPGRADE)
def test_a_step_answer_of_the_previous_version_still_goes_to_the_step_in_progress(registry, payload):
    from bot.core import CHOICE, choice_value
    from tests.helpers import inbound

    assert CHOICE == "c" and registry.payload_handler(payload) is None
    assert choice_value(inbound("someone", payload=payload)) == payload[2:]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("frigate")
    make_archive(root, "cong", REC_START, 60, segment_seconds=60, fps=2)
    return root


async def test_the_principal_approves_from_a_card_sent_before_the_upgrade(telegram, archive):
    """The teacher asks for footage; the principal taps ✅ on the card with the very bytes an old card
    carries: the request is approved, the card shows it and the teacher is told and gets the clip."""
    people = telegram.enrol({"the teacher": ("Nguyễn Thị Vân", ["teacher"]),
                             "the principal": ("Trần Văn Đức", ["principal"])})
    teacher, principal = people["the teacher"].chat, people["the principal"].chat
    telegram.seed(lambda s: s.add(Camera(school_id=people.school_id, code="cong", name="Cổng chính",
                                         source=f"frigate:{archive}")))
    await telegram.command(teacher, "camera")
    await telegram.send(teacher, "cổng")
    await telegram.tap(teacher, "c:today")
    await telegram.send(teacher, "8 giờ 00")
    await telegram.tap(teacher, "c:1")
    await telegram.tap(teacher, "c:work")
    await telegram.tap(teacher, "c:send")
    approval_id = telegram.seed(lambda s: s.exec(select(Approval)).one().id)
    card = await telegram.wait_for_message(principal, contains=f"#{approval_id}")

    old_payload = f"ap:{approval_id}:ok"  # written out, as the card in the principal's chat has it
    await telegram.push(telegram.fake.callback_update(principal, old_payload, message_id=card.message_id,
                                                      chat_id=principal))

    assert telegram.seed(lambda s: s.get(Approval, approval_id).status) == "approved"
    await telegram.wait_for_message(teacher, contains="Trần Văn Đức")  # "… was approved by Trần Văn Đức"
    await telegram.fake.wait_until(lambda: card.edits, 5, "the card to show the decision")
    await telegram.wait_for_message(teacher, predicate=lambda m: m.media_kind == "video", timeout=60)
    request = telegram.seed(lambda s: s.exec(select(FootageRequest)).one())
    assert request.approval_id == approval_id and request.status == "delivered"
