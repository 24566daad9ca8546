"""Import of the account list (CSV / XLSX) and the per-school list of systems, for the command line.

``python main.py import-accounts FILE [--school NAME] [--dry-run]``

* A table with the columns ``Họ và tên, Số điện thoại, Hệ thống, Tên đăng nhập`` (or the English keys
  ``full_name, phone, system, username``; ``Email`` may stand in for the phone). The person is found
  by phone number, else by e-mail address, else by a name that is unique in the school. The system
  by its key, its name or a common name (``CSDL``, ``SMAS``, ``Cổng thông tin`` …).
* Passwords are never recorded: a file with a password column is refused as a whole.
* Every row is checked first; if any is wrong nothing is written. A user name belongs to one
  person only (002 Điều 10.1.a). Accounts already recorded are left as they are; nothing is deleted.

``python main.py account-systems [--school NAME] [--add NAME [--key KEY]] [--sensitive KEY]
[--not-sensitive KEY] [--remove KEY]`` lists and changes the school's systems."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from bot.flows.accounts.models import Account, AccountStatus
from bot.flows.accounts.service import (
    System,
    add_account,
    find_school,
    find_system,
    save_systems,
    systems,
)
from bot.i18n import N_
from bot.text import clean, fold, normalize_email, normalize_phone
from storage import audit
from storage.models import Person, PersonStatus, School, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from bot.i18n import Translator
    from storage.db import Database

HEADER_SEARCH_ROWS = 30
MAX_USERNAME = 120

_HEADERS: dict[str, str] = {}
for _field, _names in {
    "full_name": ("full name", "name", "ho va ten", "ho ten", "can bo", "ten can bo", "ho va ten can bo"),
    "phone": ("phone", "phone number", "so dien thoai", "sdt", "so dt", "dien thoai", "di dong"),
    "email": ("email", "e mail", "thu dien tu", "email cong vu", "dia chi email"),
    "system": ("system", "he thong", "phan mem", "he thong phan mem", "ung dung", "dich vu"),
    "username": ("username", "user name", "user", "login", "ten dang nhap", "tai khoan", "ten tai khoan",
                 "tk", "ma dang nhap"),
    "password": ("password", "pass", "mat khau", "mk", "mat khau tam", "mat khau ban dau"),
}.items():
    for _name in _names:
        _HEADERS[_name] = _field

_MESSAGES: dict[str, str] = {
    "no_header": N_("No header row found. The table must start with a row naming the columns: full name, phone "
                    "number, system, user name."),
    "password_column": N_("The file has a password column (row {row}). Passwords are never recorded: delete "
                          "that column and import again."),
    "missing_column": N_("The column “{column}” is missing from the header row (row {row})."),
    "no_rows": N_("The table has no account rows under the header (row {row})."),
    "person_missing": N_("Row {row}: give the person's phone number, e-mail or full name."),
    "person_unknown": N_("Row {row}: nobody in the school's staff list matches “{value}”."),
    "person_ambiguous": N_("Row {row}: several people are named “{value}”; give the phone number."),
    "person_departed": N_("Row {row}: {name} is no longer in service."),
    "system_unknown": N_("Row {row}: unknown system “{value}” (known: {known})."),
    "username_missing": N_("Row {row}: the user name is missing."),
    "username_bad": N_("Row {row}: the user name “{value}” is too long or has spaces."),
    "username_taken": N_("Row {row}: the user name {value} already belongs to {name}; an account is never shared."),
    "username_dup": N_("Row {row}: the same system and user name as row {other}."),
}


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    values: tuple[tuple[str, str], ...] = ()

    def render(self, tr: Translator) -> str:
        return tr.t(_MESSAGES[self.code], **dict(self.values))


def _problem(code: str, **values: object) -> Problem:
    return Problem(code, tuple((k, str(v)) for k, v in values.items()))


@dataclass(frozen=True, slots=True)
class AccountsReport:
    file: str
    dry_run: bool = False
    school: str = ""
    problems: tuple[Problem, ...] = ()
    file_problem: str = ""
    added: tuple[tuple[str, str, str], ...] = ()  # (person, system title, user name)
    unchanged: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.file_problem

    def render(self, tr: Translator) -> str:
        out = [tr.t("Account import: {file}", file=self.file)]
        if self.dry_run:
            out.append(tr.t("Trial run (--dry-run): nothing was saved."))
        if self.file_problem:
            out.append(self.file_problem)
        if self.problems:
            out.append(tr.t("Nothing was imported. Fix these problems in the file ({n}) and run the import "
                            "again:", n=tr.number(len(self.problems))))
            out.extend("  • " + p.render(tr) for p in self.problems)
        if self.ok:
            out.append(tr.t("School: {school}", school=self.school))
            n, u = tr.number(len(self.added)), tr.number(self.unchanged)
            if self.dry_run:
                out.append(tr.t("If imported: {added} accounts would be added, {unchanged} already recorded.",
                                added=n, unchanged=u))
            else:
                out.append(tr.t("Import finished: {added} accounts added, {unchanged} already recorded.",
                                added=n, unchanged=u))
            out.extend("  • " + tr.t("{name}: {system} · {username}", name=name, system=system, username=user)
                       for name, system, user in self.added)
        return html.unescape("\n".join(out))


def _norm(raw: str) -> str:
    s = re.sub(r"\(.*?\)|\[.*?\]|\*", " ", fold(raw))
    return re.sub(r"[^a-z0-9]+", " ", s).strip()


def _header(table: list[tuple[int, list[str]]]) -> tuple[int, dict[str, int]] | None:
    for row_no, cells in table[:HEADER_SEARCH_ROWS]:
        columns: dict[str, int] = {}
        for idx, cell in enumerate(cells):
            key = _HEADERS.get(_norm(cell))
            if key and key not in columns:
                columns[key] = idx
        if len(columns) >= 2 and ("system" in columns or "username" in columns):
            return row_no, columns
    return None


def import_accounts_file(db: Database, path: str, *, school_name: str | None, dry_run: bool,
                         tr: Translator) -> AccountsReport:
    """Check the whole file, then (unless ``dry_run``) record the accounts in one transaction."""
    from pathlib import Path

    from storage.staff_import import FileProblem, read_table

    shown = Path(path).name or path
    try:
        tables = read_table(path)
    except FileProblem as fp:
        return AccountsReport(shown, dry_run, file_problem=fp.problem.render(tr))
    best: tuple[list[tuple[int, list[str]]], int, dict[str, int]] | None = None
    for table in tables:
        found = _header(table)
        if found and (best is None or len(found[1]) > len(best[2])):
            best = (table, found[0], found[1])
    if best is None:
        return AccountsReport(shown, dry_run, problems=(_problem("no_header"),))
    table, header_row, cols = best
    if "password" in cols:
        return AccountsReport(shown, dry_run, problems=(_problem("password_column", row=header_row),))
    missing = [c for c in ("system", "username") if c not in cols]
    if missing:
        return AccountsReport(shown, dry_run, problems=tuple(
            _problem("missing_column", column=tr.t(N_("System")) if c == "system" else tr.t(N_("User name")),
                     row=header_row) for c in missing))

    def unit(s: Session) -> AccountsReport:
        school, problem = find_school(s, school_name, tr=tr)
        if school is None:
            return AccountsReport(shown, dry_run, file_problem=problem)
        return _apply(s, school, table, header_row, cols, file=shown, dry_run=dry_run, tr=tr)

    return db.run_sync(unit)


def _apply(s: Session, school: School, table: list[tuple[int, list[str]]], header_row: int,
           cols: dict[str, int], *, file: str, dry_run: bool, tr: Translator) -> AccountsReport:
    def get(cells: list[str], key: str) -> str:
        i = cols.get(key)
        return clean(cells[i]) if i is not None and i < len(cells) else ""

    people = list(s.exec(select(Person).where(Person.school_id == school.id).order_by(col(Person.id))))
    by_phone = {p.phone: p for p in people if p.phone}
    by_email = {p.email.lower(): p for p in people if p.email}
    by_name: dict[str, list[Person]] = {}
    for p in people:
        by_name.setdefault(fold(p.full_name), []).append(p)
    existing = {(a.system, a.username.lower()): a for a in s.exec(select(Account).where(
        Account.school_id == school.id)).all()}
    names = {p.id: p.full_name for p in people}
    known = ", ".join(sys.title(tr) for sys in systems(school))
    problems: list[Problem] = []
    rows: list[tuple[Person, System, str]] = []
    seen: dict[tuple[str, str], int] = {}
    unchanged = 0
    for row_no, cells in table:
        if row_no <= header_row or not any(c.strip() for c in cells):
            continue
        name, phone_raw, email_raw = get(cells, "full_name"), get(cells, "phone"), get(cells, "email")
        system_raw, user = get(cells, "system"), get(cells, "username")
        if not (name or phone_raw or email_raw or system_raw or user):
            continue
        person: Person | None = None
        if phone_raw:
            phone = normalize_phone(phone_raw)
            person = by_phone.get(phone) if phone else None
            if person is None:
                problems.append(_problem("person_unknown", row=row_no, value=phone_raw))
                continue
        elif email_raw:
            person = by_email.get((normalize_email(email_raw) or email_raw).lower())
            if person is None:
                problems.append(_problem("person_unknown", row=row_no, value=email_raw))
                continue
        elif name:
            same = by_name.get(fold(name), [])
            if len(same) != 1:
                problems.append(_problem("person_ambiguous" if same else "person_unknown", row=row_no, value=name))
                continue
            person = same[0]
        else:
            problems.append(_problem("person_missing", row=row_no))
            continue
        if person.status != PersonStatus.ACTIVE:
            problems.append(_problem("person_departed", row=row_no, name=person.full_name))
            continue
        system = find_system(school, system_raw) if system_raw else None
        if system is None:
            problems.append(_problem("system_unknown", row=row_no, value=system_raw or "-", known=known))
            continue
        if not user:
            problems.append(_problem("username_missing", row=row_no))
            continue
        if len(user) > MAX_USERNAME or " " in user:
            problems.append(_problem("username_bad", row=row_no, value=user))
            continue
        key = (system.key, user.lower())
        if key in seen:
            problems.append(_problem("username_dup", row=row_no, other=seen[key]))
            continue
        seen[key] = row_no
        acc = existing.get(key)
        if acc is not None and acc.person_id != person.id:
            problems.append(_problem("username_taken", row=row_no, value=user, name=names.get(acc.person_id, "?")))
            continue
        if acc is not None:
            unchanged += 1
            continue
        rows.append((person, system, user))
    if problems:
        return AccountsReport(file, dry_run, school=school.name, problems=tuple(problems))
    if not rows and not unchanged:
        return AccountsReport(file, dry_run, school=school.name, problems=(_problem("no_rows", row=header_row),))
    added = tuple((p.full_name, sys.title(tr), user) for p, sys, user in rows)
    if not dry_run:
        now = utcnow()
        ids = []
        for p, sys, user in rows:
            acc, _ = add_account(s, school_id=school.id or 0, person_id=p.id or 0, system=sys.key, username=user,
                                 now=now)
            ids.append(acc.id if acc else None)
        audit.record(s, action="account.imported", school_id=school.id, channel="cli", subject=f"school:{school.id}",
                     details={"file": file, "added": len(rows), "unchanged": unchanged, "accounts": ids})
    return AccountsReport(file, dry_run, school=school.name, added=added, unchanged=unchanged)


# -- the list of systems ----------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", fold(name)).strip("_")[:40]


def manage_systems(db: Database, *, school_name: str | None, add: str | None, key: str | None,
                   sensitive: str | None, not_sensitive: str | None, remove: str | None, tr: Translator) -> int:
    """``python main.py account-systems``: list the school's systems, or change the list."""

    def unit(s: Session) -> tuple[int, list[str]]:
        school, problem = find_school(s, school_name, tr=tr)
        if school is None:
            return 1, [problem]
        items = systems(school)
        changed: dict[str, object] = {}
        if add:
            name = clean(add)[:120]
            new_key = _slug(key or name)
            if not name or not new_key or any(x.key == new_key for x in items):
                return 1, [tr.t("A system with the key “{key}” already exists, or the name is empty.", key=new_key)]
            items.append(System(new_key, name, False, False))
            changed["added"] = new_key
        for flag, value in ((True, sensitive), (False, not_sensitive)):
            if value:
                found = next((x for x in items if x.key == value), None)
                if found is None:
                    return 1, [tr.t("No system with the key “{key}”.", key=value)]
                items = [System(x.key, x.name, flag, x.builtin) if x.key == value else x for x in items]
                changed["sensitive" if flag else "not_sensitive"] = value
        if remove:
            if not any(x.key == remove for x in items):
                return 1, [tr.t("No system with the key “{key}”.", key=remove)]
            in_use = s.exec(select(Account.id).where(Account.school_id == school.id, Account.system == remove,
                                                     Account.status != AccountStatus.REVOKED)).first()
            if in_use is not None:
                return 1, [tr.t("The system “{key}” still has accounts; revoke them first.", key=remove)]
            items = [x for x in items if x.key != remove]
            changed["removed"] = remove
        if changed:
            save_systems(school, items)
            s.add(school)
            s.flush()
            audit.record(s, action="account.systems_changed", school_id=school.id, channel="cli",
                         subject=f"school:{school.id}", details={**changed, "systems": [x.key for x in items]})
        counts: dict[str, int] = {}
        for a in s.exec(select(Account).where(Account.school_id == school.id,
                                              Account.status != AccountStatus.REVOKED)).all():
            counts[a.system] = counts.get(a.system, 0) + 1
        lines = [tr.t("Systems of {school}:", school=school.name)]
        for x in items:
            lines.append("  • " + tr.t("{key}: {name} — {sensitive}, {n} accounts", key=x.key, name=x.title(tr),
                                       sensitive=tr.t("sensitive (BGH approves resets)") if x.sensitive
                                       else tr.t("not sensitive"), n=tr.number(counts.get(x.key, 0))))
        return 0, lines

    code, lines = db.run_sync(unit)
    print(html.unescape("\n".join(lines)), flush=True)
    return code


__all__ = ["AccountsReport", "import_accounts_file", "manage_systems"]
