"""Adding a workflow, worked through with the leave request of ``tests/example_flows/leave`` (the
example of README's “Adding a workflow”): discovered beside the real workflows and run end to end
through the dispatcher; ``main.py db-revision`` writes its one migration; a workflow claiming a
command or button prefix another one has stops the start with one clear line; ``main.py workflows``
lists what discovery found."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Table, inspect, text
from sqlmodel import SQLModel, select

import main
from bot.core import Ctx, Flow, Handler, Registry, Step, Workflow
from bot.core.flow import discover_workflows
from storage.db import make_engine, migrate
from storage.models import Approval
from storage.revision import VERSIONS_DIR, make_revision
from tests.example_flows.leave.models import LeaveRequest, LeaveStatus
from tests.helpers import enrol, inbound, recording_runtime

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = "tests.example_flows"
LEAVE_TABLE: Table = LeaveRequest.__table__  # type: ignore[attr-defined]
# The example ships with no migration: its table is in the metadata only while a test needs it
# (fixture ``leave_tables``), so that the shipped migrations keep matching the shipped models.
SQLModel.metadata.remove(LEAVE_TABLE)


@pytest.fixture
def leave_tables() -> Iterator[list[Table]]:
    """The example workflow's tables, registered with the metadata for this test."""
    tables = [m.__table__ for wf in discover_workflows(EXAMPLES) for m in wf.tables]
    for t in tables:
        if t.key not in SQLModel.metadata.tables:
            SQLModel.metadata._add_table(t.name, t.schema, t)  # what declaring the model did at import
    yield tables
    for t in tables:
        SQLModel.metadata.remove(t)


def with_examples() -> Registry:
    """The real workflows (and handlers) plus the examples, as ``main.py`` would discover them."""
    return Registry().discover().discover(EXAMPLES, handlers_package="")


@pytest.fixture
async def school(settings, clock, leave_tables) -> AsyncIterator[tuple[Any, Any]]:
    """A runtime with every real workflow and the leave request; a teacher and the principal who
    read English (the example's strings are not in the catalogue)."""
    async with recording_runtime(settings, clock, lambda s: None, registry=with_examples()) as rt:
        rt.db.run_sync(lambda s: [t.create(s.connection(), checkfirst=True) for t in leave_tables])
        try:
            cast = enrol(rt.db, {"the teacher": ("Nguyễn Thị Vân", ["teacher"], {"locale": "en"}),
                                 "the principal": ("Trần Văn Đức", ["principal"], {"locale": "en"})})
            yield rt, cast
        finally:
            await rt.dispatcher.drain()
            rt.db.run_sync(lambda s: [t.drop(s.connection(), checkfirst=True) for t in reversed(leave_tables)])


def said_to(rt: Any, chat: str | int) -> list[str]:
    return rt.test_channel.texts(str(chat))


def leave_requests(rt: Any) -> list[LeaveRequest]:
    return rt.db.run_sync(lambda s: list(s.exec(select(LeaveRequest).order_by(LeaveRequest.id))))


async def ask_for_leave(rt: Any, teacher: str | int, dates: str, reason: str) -> None:
    await rt.dispatcher.handle(inbound(str(teacher), command="nghiphep"))
    await rt.dispatcher.handle(inbound(str(teacher), text=dates))
    await rt.dispatcher.handle(inbound(str(teacher), text=reason))
    await rt.dispatcher.handle(inbound(str(teacher), payload="c:send"))


# -- the conversation -------------------------------------------------------------------------------
async def test_a_teacher_asks_for_leave_the_principal_approves_and_the_teacher_is_told(school) -> None:
    rt, cast = school
    teacher, principal = cast["the teacher"], cast["the principal"]

    await rt.dispatcher.handle(inbound(str(teacher.chat), command="nghiphep"))
    assert "Which days do you need off?" in said_to(rt, teacher.chat)[-1]
    await rt.dispatcher.handle(inbound(str(teacher.chat), text="từ 24/11 đến 26/11"))
    assert said_to(rt, teacher.chat)[-1] == "What is the reason for your leave?"
    await rt.dispatcher.handle(inbound(str(teacher.chat), text="Đưa con đi khám bệnh ở Hà Nội"))
    assert "Send it to the principal?" in said_to(rt, teacher.chat)[-1]
    await rt.dispatcher.handle(inbound(str(teacher.chat), payload="c:send"))
    assert "was sent to the principal" in said_to(rt, teacher.chat)[-1]

    card = [o for o in rt.test_channel.sent if o.chat_id == str(principal.chat)][-1]
    assert "Leave request" in card.reply.text and "Đưa con đi khám bệnh ở Hà Nội" in card.reply.text
    approve = next(b.payload for row in card.reply.buttons for b in row if b.payload.endswith(":ok"))
    assert re.fullmatch(r"ap:\d+:ok", approve)
    await rt.dispatcher.handle(inbound(str(principal.chat), payload=approve))

    assert "was approved by Trần Văn Đức" in said_to(rt, teacher.chat)[-1]
    [req] = leave_requests(rt)
    assert (req.start_date, req.end_date, req.status) == (date(2026, 11, 24), date(2026, 11, 26), LeaveStatus.APPROVED)
    approval = rt.db.run_sync(lambda s: s.get(Approval, req.approval_id))
    assert (approval.kind, approval.status) == ("leave", "approved")


async def test_a_leave_overlapping_one_already_asked_for_is_refused(school) -> None:
    rt, cast = school
    teacher = cast["the teacher"]
    await ask_for_leave(rt, teacher.chat, "từ 24/11 đến 26/11", "Đưa con đi khám bệnh")
    await rt.dispatcher.handle(inbound(str(teacher.chat), command="nghiphep"))
    await rt.dispatcher.handle(inbound(str(teacher.chat), text="từ 26/11 đến 27/11"))
    assert "You already asked for leave from" in said_to(rt, teacher.chat)[-1]
    assert len(leave_requests(rt)) == 1


# -- its migration ----------------------------------------------------------------------------------
def copy_of_the_migrations(tmp_path: Path) -> Path:
    copy = tmp_path / "versions"
    shutil.copytree(VERSIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_db_revision_writes_one_migration_that_creates_leave_request_and_it_applies(tmp_path, leave_tables) -> None:
    versions = copy_of_the_migrations(tmp_path)
    before = {p.name for p in versions.glob("*.py")}

    rev = make_revision("leave requests", flows_packages=("bot.flows", EXAMPLES), versions_dir=versions)

    assert rev is not None and {p.name for p in versions.glob("*.py")} - before == {rev.path.name}
    numbers = sorted(int(name[:4]) for name in before)
    assert rev.path.name == f"{numbers[-1] + 1:04d}_leave_requests.py" and rev.revision == rev.path.name[:4]
    source = rev.path.read_text(encoding="utf-8")
    assert f"down_revision = {rev.down_revision!r}" in source
    assert re.findall(r"op\.create_table\('(\w+)'", source) == ["leave_request"]
    assert "drop_table('leave_request')" in source and "alter_column" not in source

    engine = make_engine(f"sqlite:///{tmp_path / 'applied.db'}")
    try:
        migrate(engine, versions_dir=versions)
        assert "leave_request" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == rev.revision
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), SQLModel.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_db_revision_writes_nothing_when_the_migrations_match_the_models(tmp_path) -> None:
    versions = copy_of_the_migrations(tmp_path)
    before = sorted(p.name for p in versions.glob("*.py"))
    assert make_revision("nothing changed", versions_dir=versions) is None
    assert sorted(p.name for p in versions.glob("*.py")) == before


# -- claims -----------------------------------------------------------------------------------------
def _start(ctx: Ctx) -> Step:
    return Step.done()


def test_a_second_workflow_claiming_the_camera_command_is_refused_naming_both() -> None:
    clash = Workflow(name="camera_again", title="Camera again",
                     flows=(Flow(name="camera_again", title="Camera again", start=_start, states={}, command="camera"),))
    with pytest.raises(ValueError, match=re.escape(
            "command /camera is claimed twice: by workflow 'footage' and by workflow 'camera_again'")):
        Registry().discover().add_workflow(clash)


def test_a_second_workflow_claiming_the_footage_button_prefix_is_refused_naming_both() -> None:
    clash = Workflow(name="clips", title="Clips", handlers=(Handler(_start, prefix="fx"),))
    with pytest.raises(ValueError, match=re.escape(
            "button prefix 'fx' is claimed twice: by workflow 'footage' and by workflow 'clips'")):
        Registry().discover().add_workflow(clash)


def test_main_py_run_refuses_to_start_with_one_line_when_workflows_clash(tmp_path) -> None:
    code = ("import sys, main; main.FLOWS_PACKAGES = ('bot.flows', 'tests.clashing_flows'); "
            "sys.exit(main.main(['run']))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1
    assert res.stderr.strip() == ("main.py run: cannot start: command /camera is claimed twice: "
                                  "by workflow 'footage' and by workflow 'camera_again'")
    assert not (tmp_path / "data").exists()  # stopped before anything was created


# -- main.py workflows --------------------------------------------------------------------------------
def test_main_py_workflows_lists_every_real_workflow(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main.main(["workflows"]) == 0
    out = capsys.readouterr().out
    real = discover_workflows()
    assert {wf.name for wf in real} >= {"footage", "articles", "incidents", "equipment", "accounts", "calendar",
                                        "delegation", "profile"}
    for wf in real:
        assert re.search(rf"^{wf.name} — ", out, re.M), wf.name
        for command in wf.commands:
            assert f"/{command}" in out
    assert re.search(r"^  approval kinds +footage$", out, re.M)
    assert re.search(r"^  tables +camera, footage_request$", out, re.M)
    assert "leave" not in out.split()


def test_main_py_workflows_lists_the_example_once_it_is_discovered(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(main, "FLOWS_PACKAGES", ("bot.flows", EXAMPLES))
    assert main.main(["workflows"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("\nleave — "):]
    for line in ("/nghiphep", "approval kinds   leave", "tables           leave_request",
                 "settings         LeaveSettings"):
        assert line in block
