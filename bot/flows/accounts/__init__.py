"""Accounts (seeds 002 Điều 10, 003 Điều 5, 004 Điều 10): password resets (``reset.py``), the IT
team's account list (``admin.py``), revoking a leaver's accounts (``staff.py``), official e-mail
names (``email_names.py``), the accounts import (``importer.py``)."""

from pathlib import Path

from sqlmodel import Session

from bot.core import Workflow
from bot.flows.accounts import admin, reset, staff
from bot.flows.accounts.models import Account, AccountReset, Revocation, RevocationItem
from bot.flows.accounts.settings import AccountSettings
from bot.i18n import N_
from storage.models import School


def _demo_seed(session: Session, school: School, *, data_dir: Path) -> None:
    from bot.flows.accounts.cards import demo_seed

    demo_seed(session, school)


WORKFLOW = Workflow(
    name="accounts",
    title=N_("Password reset"),
    flows=(reset.FLOW, admin.FLOW, staff.FLOW),
    handlers=reset.HANDLERS,
    approval_hooks={"account_reset": reset.on_decided},
    rules=reset.RULES,
    tables=(Account, AccountReset, Revocation, RevocationItem),
    settings=AccountSettings,
    on_staff_import=staff.after_staff_import,
    demo_seed=_demo_seed,
)
