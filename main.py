"""Composition root and command line of the school assistant.

    python main.py run                  start the bot (Telegram if configured, web chat)
    python main.py demo                 create the demo school and start with the web chat
    python main.py import-staff FILE    import or update the staff list (CSV / XLSX)
    python main.py cameras check [CODE] what the cameras' recordings hold for the last hour (gaps, errors)
    python main.py invite               print single-use link codes
    python main.py audit-verify         check the audit log's hash chain
    python main.py audit-export         write the audit log as CSV for an inspector
    python main.py migrate              apply database migrations and exit
    python main.py settings show        the workflows' per-school settings (settings set KEY VALUE changes one)
    python main.py workflows            list the workflows found (commands, buttons, approvals, tables …)
    python main.py db-revision "MSG"    write the next migration from the models (Alembic autogenerate)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.config import ConfigError, Settings, load_settings
from bot.i18n import Translator
from storage.db import Database

if TYPE_CHECKING:
    from bot.core import Registry

log = logging.getLogger("school_assistant")

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, Settings], int], Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        COMMANDS[name] = (fn, getattr(fn, "_args", lambda p: None), help_text)
        return fn
    return deco


def args(builder: Callable[[argparse.ArgumentParser], None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._args = builder  # type: ignore[attr-defined]
        return fn
    return deco


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs full request URLs, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def open_db(settings: Settings) -> Database:
    db = Database(settings.effective_database_url)
    db.migrate()
    return db


def tr(settings: Settings) -> Translator:
    return Translator(settings.default_locale, settings.tz)


#: the packages whose workflows are discovered (each package or module under them declaring ``WORKFLOW``)
FLOWS_PACKAGES: tuple[str, ...] = ("bot.flows",)


class CliError(Exception):
    """A problem reported as one line on stderr (exit status 1) instead of a traceback."""


def load_workflows() -> Registry:
    """Discover the workflows of :data:`FLOWS_PACKAGES` (and the entry points of ``bot.handlers``).
    Two of them claiming one command, button prefix, approval kind, rule key or flow name stop the
    program with a line naming both."""
    from bot.core import Registry

    registry = Registry()
    try:
        for i, package in enumerate(FLOWS_PACKAGES):
            registry.discover(package, "bot.handlers" if i == 0 else "")
    except ValueError as exc:
        raise CliError(f"cannot start: {exc}") from exc
    return registry


# -- run / demo ---------------------------------------------------------------------------------
async def _serve(settings: Settings, registry: Registry) -> None:
    from bot.runtime import Runtime, settle_heap

    rt = Runtime(settings, registry=registry)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover
            pass
    await rt.start()
    settle_heap()
    t = tr(settings)
    if settings.web_chat_enabled:
        print(t.t("Web chat: http://{host}:{port}/", host=settings.web_host, port=rt.web_port), flush=True)
    try:
        await stop.wait()
    finally:
        await rt.stop()


@command("run", "start the bot")
def cmd_run(ns: argparse.Namespace, settings: Settings) -> int:
    registry = load_workflows()  # a clash between workflows stops here, before anything starts
    asyncio.run(_serve(settings, registry))
    return 0


@args(lambda p: (p.add_argument("--no-serve", action="store_true", help="only create the demo school"),
                 p.add_argument("--no-recordings", action="store_true", help="skip the synthetic camera footage")))
@command("demo", "create the demo school (one person of each role) and start with the web chat")
def cmd_demo(ns: argparse.Namespace, settings: Settings) -> int:
    from functools import partial

    from bot.demo import create_demo_school

    registry = load_workflows()
    db = open_db(settings)
    workflows = list(registry.workflows.values())
    seeders = [partial(wf.demo_seed, data_dir=settings.data_dir) for wf in workflows if wf.demo_seed is not None]
    name = db.run_sync(lambda s: create_demo_school(s, extra_seeders=seeders))
    db.dispose()
    t = tr(settings)
    print(t.t("Demo school ready: {school}", school=name), flush=True)
    media = [wf.demo_media for wf in workflows if wf.demo_media is not None]
    if media and not ns.no_recordings:
        print(t.t("Preparing demo camera recordings (the last half hour)…"), flush=True)
        for make in media:
            try:
                make(settings.data_dir)
            except Exception as exc:  # ffmpeg missing or failing must not stop the demo
                log.warning("demo recordings could not be made: %s", exc)
    if ns.no_serve:
        return 0
    asyncio.run(_serve(settings, registry))
    return 0


@command("migrate", "apply database migrations and exit")
def cmd_migrate(ns: argparse.Namespace, settings: Settings) -> int:
    open_db(settings).dispose()
    return 0


# -- staff and invites ----------------------------------------------------------------------------
@args(lambda p: (p.add_argument("file"), p.add_argument("--school", default=None),
                 p.add_argument("--dry-run", action="store_true")))
@command("import-staff", "import or update the staff list from CSV, XLSX or XLS")
def cmd_import_staff(ns: argparse.Namespace, settings: Settings) -> int:
    from storage.staff_import import import_staff_file

    db = open_db(settings)
    report = import_staff_file(db, ns.file, school_name=ns.school, dry_run=ns.dry_run, tr=tr(settings))
    print(report.render(tr(settings)))
    return 0 if report.ok else 1


@args(lambda p: (p.add_argument("--person", default=None, help="phone number of one person"),
                 p.add_argument("--school", default=None),
                 p.add_argument("--all", action="store_true", help="also people already linked")))
@command("invite", "print single-use, expiring link codes for people")
def cmd_invite(ns: argparse.Namespace, settings: Settings) -> int:
    from storage.staff_import import print_invites

    db = open_db(settings)
    return print_invites(db, settings, phone=ns.person, school_name=ns.school, include_linked=ns.all,
                         tr=tr(settings))


@args(lambda p: (p.add_argument("--school", default=None),
                 p.add_argument("--load", default=None, metavar="FILE", help="TOML or JSON rule settings"),
                 p.add_argument("--run-now", default=None, metavar="RULE",
                                help="send this period's occurrence of a rule now (never twice: the "
                                     "scheduled run of the period then sends nothing)")))
@command("calendar", "print the reminder calendar (next and last runs), load its settings from a TOML/JSON "
                     "file, or run a rule now")
def cmd_calendar(ns: argparse.Namespace, settings: Settings) -> int:
    from bot.engine.calendar_file import load_file, render, run_now

    registry = load_workflows()
    db = open_db(settings)
    if ns.run_now:
        ok, lines = run_now(db, registry, settings, ns.run_now, school_name=ns.school, tr=tr(settings))
        print("\n".join(lines), file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    ok = True
    if ns.load:
        ok, lines = load_file(db, registry, ns.load, school_name=ns.school, tr=tr(settings))
        print("\n".join(lines))
    if ok:
        ok, lines = render(db, registry, school_name=ns.school, tr=tr(settings))
        print("\n".join(lines))
    return 0 if ok else 1


@args(lambda p: (p.add_argument("file"), p.add_argument("--school", default=None)))
@command("import-cameras", "import or update the camera list from CSV, XLSX or XLS")
def cmd_import_cameras(ns: argparse.Namespace, settings: Settings) -> int:
    from bot.flows.footage.cameras import import_cameras_file

    db = open_db(settings)
    report = import_cameras_file(db, ns.file, school_name=ns.school, tr=tr(settings))
    print(report.render(tr(settings)))
    return 0 if report.ok else 1


def _cameras_args(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="what each camera's recording source holds for the last hour")
    check.add_argument("code", nargs="?", default=None, help="one camera's code (default: every camera in use)")
    check.add_argument("--school", default=None)


@args(_cameras_args)
@command("cameras", "check the cameras' recording sources (cameras check [CODE]: segments, gaps, errors of the last hour)")
def cmd_cameras(ns: argparse.Namespace, settings: Settings) -> int:
    """Exit status: 0 every source is fine, 1 a problem was found, 2 the school or camera was not found."""
    import html

    from sqlmodel import Session

    from bot.flows.accounts.service import find_school
    from bot.flows.footage.check import CameraRef, cameras_to_check, check_camera, describe

    t = tr(settings)
    db = open_db(settings)

    def unit(s: Session) -> tuple[list[CameraRef], str]:
        school, problem = find_school(s, ns.school, tr=t)
        if school is None:
            return [], problem
        cams = [CameraRef.of(c) for c in cameras_to_check(s, school_id=school.id or 0, code=ns.code)]
        if not cams:
            return [], (t.t("No camera with the code {code}.", code=ns.code) if ns.code
                        else t.t("The school has no cameras yet: import them with python main.py import-cameras FILE."))
        return cams, ""

    cams, problem = db.run_sync(unit)
    db.dispose()
    if problem:
        print(html.unescape(problem), file=sys.stderr, flush=True)
        return 2
    now = datetime.now(UTC)
    reports = [check_camera(cam, settings, now) for cam in cams]
    print(html.unescape("\n\n".join(describe(r, t) for r in reports)), flush=True)
    return 0 if all(r.ok for r in reports) else 1


@args(lambda p: (p.add_argument("file"), p.add_argument("--school", default=None),
                 p.add_argument("--update-stock", action="store_true",
                                help="also set quantity, condition and room of existing codes from the file")))
@command("import-equipment", "import or update the teaching-equipment catalogue from CSV, XLSX or XLS")
def cmd_import_equipment(ns: argparse.Namespace, settings: Settings) -> int:
    from bot.flows.equipment.catalogue import import_equipment_file

    db = open_db(settings)
    report = import_equipment_file(db, ns.file, school_name=ns.school, tr=tr(settings),
                                   update_stock=ns.update_stock)
    print(report.render(tr(settings)))
    return 0 if report.ok else 1


@args(lambda p: p.add_argument("dest", help="folder on the backup storage (USB disk, NAS)"))
@command("backup", "back up the database and the media folder (safe while the bot runs)")
def cmd_backup(ns: argparse.Namespace, settings: Settings) -> int:
    from storage.backup import record_backup, run_backup

    db = open_db(settings)
    result = run_backup(settings, ns.dest, tr=tr(settings))
    record_backup(db, result)
    print(result.render(tr(settings)))
    return 0 if result.ok else 1


@args(lambda p: (p.add_argument("src", help="a backup folder (or the folder holding them: the newest is used)"),
                 p.add_argument("--force", action="store_true", help="replace a database that already holds data")))
@command("restore", "restore a backup made with the backup command (stop the bot first)")
def cmd_restore(ns: argparse.Namespace, settings: Settings) -> int:
    from storage.backup import record_restore, run_restore

    result = run_restore(settings, ns.src, tr=tr(settings), force=ns.force)
    if result.ok:
        db = open_db(settings)  # brings an older backup up to the current migrations
        record_restore(db, result)
        db.dispose()
    print(result.render(tr(settings)))
    return 0 if result.ok else 1


# -- audit ----------------------------------------------------------------------------------------
@command("audit-verify", "check the audit log's hash chain")
def cmd_audit_verify(ns: argparse.Namespace, settings: Settings) -> int:
    from storage import audit

    db = open_db(settings)
    res = db.run_sync(lambda s: audit.verify(s))
    t = tr(settings)
    if res.ok:
        print(t.t("Audit log intact: {n} events checked.", n=res.checked))
        return 0
    print(t.t("Audit log BROKEN at event #{id} ({reason}); {n} events before it are intact.",
              id=res.broken_id, reason=res.reason, n=res.checked))
    return 1


def _parse_day(value: str) -> datetime:
    from bot.text import parse_date

    today = datetime.now().date()
    d = None
    try:
        d = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        d = parse_date(value, today=today)
    if d is None:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use 2026-11-21 or 21/11/2026)")
    return datetime(d.year, d.month, d.day)


@args(lambda p: (p.add_argument("--from", dest="start", type=_parse_day, default=None),
                 p.add_argument("--to", dest="end", type=_parse_day, default=None),
                 p.add_argument("--out", default="-")))
@command("audit-export", "write audit events as CSV (for an inspector)")
def cmd_audit_export(ns: argparse.Namespace, settings: Settings) -> int:
    from storage import audit

    db = open_db(settings)
    tz = settings.tz
    start = ns.start.replace(tzinfo=tz) if ns.start else None
    end = (ns.end.replace(tzinfo=tz) + timedelta(days=1)) if ns.end else None
    if ns.out == "-":
        db.run_sync(lambda s: audit.export_csv(s, sys.stdout, start=start, end=end))
    else:
        with open(ns.out, "w", newline="", encoding="utf-8-sig") as fh:
            n = db.run_sync(lambda s: audit.export_csv(s, fh, start=start, end=end))
        print(tr(settings).t("{n} events written to {path}", n=n, path=ns.out))
    return 0


# -- accounts (bot/flows/accounts*.py) -------------------------------------------------------------
@args(lambda p: (p.add_argument("--school", default=None),
                 p.add_argument("--suffix", default=None, help="the school's suffix, e.g. @truong.edu.vn"),
                 p.add_argument("--apply", action="store_true", help="save the proposed addresses")))
@command("email-names", "propose official e-mail addresses (001 Điều 5) for people without one")
def cmd_email_names(ns: argparse.Namespace, settings: Settings) -> int:
    from bot.flows.accounts.email_names import run_cli

    db = open_db(settings)
    return run_cli(db, school_name=ns.school, suffix=ns.suffix, do_apply=ns.apply, tr=tr(settings))


@args(lambda p: (p.add_argument("file"), p.add_argument("--school", default=None),
                 p.add_argument("--dry-run", action="store_true")))
@command("import-accounts", "import who has which account (user names only) from CSV, XLSX or XLS")
def cmd_import_accounts(ns: argparse.Namespace, settings: Settings) -> int:
    from bot.flows.accounts.importer import import_accounts_file

    db = open_db(settings)
    report = import_accounts_file(db, ns.file, school_name=ns.school, dry_run=ns.dry_run, tr=tr(settings))
    print(report.render(tr(settings)))
    return 0 if report.ok else 1


@args(lambda p: (p.add_argument("--school", default=None), p.add_argument("--add", default=None, metavar="NAME"),
                 p.add_argument("--key", default=None), p.add_argument("--sensitive", default=None, metavar="KEY"),
                 p.add_argument("--not-sensitive", default=None, metavar="KEY"),
                 p.add_argument("--remove", default=None, metavar="KEY")))
@command("account-systems", "list or change the school's systems (sensitive ones need BGH approval for resets)")
def cmd_account_systems(ns: argparse.Namespace, settings: Settings) -> int:
    from bot.flows.accounts.importer import manage_systems

    db = open_db(settings)
    return manage_systems(db, school_name=ns.school, add=ns.add, key=ns.key, sensitive=ns.sensitive,
                          not_sensitive=ns.not_sensitive, remove=ns.remove, tr=tr(settings))


# -- workflows (developers) ------------------------------------------------------------------------
def describe_workflows(registry: Registry, t: Translator) -> list[str]:
    """What discovery found, one block per workflow (``main.py workflows``)."""

    def row(label: str, items: Iterable[str]) -> str:
        return f"  {label:<16} {', '.join(items) or '—'}"

    lines = [f"{len(registry.workflows)} workflows found in {', '.join(FLOWS_PACKAGES)}:"]
    for wf in registry.workflows.values():
        title = t.t(wf.title)
        lines += ["", f"{wf.name} — {title}" + (f" ({wf.title})" if title != wf.title else ""),
                  row("commands", (f"/{c}" for c in wf.commands)),
                  row("flows", (f.name for f in wf.flows)),
                  row("button prefixes", wf.prefixes),
                  row("approval kinds", wf.approval_hooks),
                  row("reminder rules", (r.key for r in wf.rules)),
                  row("periodic jobs", (j.key for j in wf.jobs)),
                  row("tables", (getattr(m, "__tablename__", m.__name__) for m in wf.tables)),
                  row("settings", [wf.settings.__name__] if wf.settings is not None else [])]
    return lines


@command("workflows", "list the workflows discovery finds: commands, buttons, approvals, rules, jobs, tables, settings")
def cmd_workflows(ns: argparse.Namespace, settings: Settings) -> int:
    print("\n".join(describe_workflows(load_workflows(), tr(settings))))
    return 0


@args(lambda p: p.add_argument("message", help='what changed, e.g. "leave requests"'))
@command("db-revision", "write the next migration from the models (autogenerate against a scratch database)")
def cmd_db_revision(ns: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from storage.revision import RevisionError, make_revision

    load_workflows()  # a clash between workflows is reported first
    try:
        rev = make_revision(ns.message, flows_packages=FLOWS_PACKAGES)
    except RevisionError as exc:
        raise CliError(str(exc)) from exc
    if rev is None:
        print("No change: the migrations already match the models. Nothing was written.")
        return 0
    try:
        shown = rev.path.relative_to(Path.cwd())
    except ValueError:
        shown = rev.path
    print(f"Wrote {shown} (revision {rev.revision!r}, after {rev.down_revision!r}). Read it, add what "
          "autogenerate cannot know (data to move, server defaults), then run the tests.")
    return 0


# -- per-school settings of the workflows (bot/settings.py) ----------------------------------------
def _settings_args(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="every setting: key, current value, default, label")
    show.add_argument("--school", default=None)
    change = actions.add_parser("set", help="change one setting (validated and audited)")
    change.add_argument("key", help="e.g. incidents.urgent_escalate_minutes (see: settings show)")
    change.add_argument("value", help="a number; yes/no (có/không); a list as a, b, c or JSON; a table as JSON")
    change.add_argument("--school", default=None)


@args(_settings_args)
@command("settings", "show or change the workflows' per-school settings (settings show | settings set KEY VALUE)")
def cmd_settings(ns: argparse.Namespace, settings: Settings) -> int:
    import html

    from sqlmodel import Session

    from bot import settings as school_settings
    from bot.flows.accounts.service import find_school

    t = tr(settings)
    models = load_workflows().settings_models()
    db = open_db(settings)

    def unit(s: Session) -> tuple[int, list[str]]:
        school, problem = find_school(s, ns.school, tr=t)
        if school is None:
            return 1, [problem]
        if ns.action == "show":
            return 0, school_settings.show_lines(school, models, t)
        result = school_settings.change(s, school, ns.key, ns.value, models=models, tr=t)
        return (0 if result.ok else 2), [result.message]

    code, lines = db.run_sync(unit)
    db.dispose()
    print(html.unescape("\n".join(lines)), file=sys.stdout if code == 0 else sys.stderr, flush=True)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="School assistant (Telegram / Zalo)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_fn, builder, help_text) in COMMANDS.items():
        getattr(_fn, "_args", builder)(sub.add_parser(name, help=help_text))  # @args may sit above @command
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    setup_logging(settings)
    fn = COMMANDS[ns.command][0]
    try:
        return fn(ns, settings)
    except CliError as exc:
        print(f"main.py {ns.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
