"""Teaching equipment (seed 003): record changes and have them approved (``changes.py``), borrow and
return (``use.py``), IT repair requests (``repair.py``), semester reports and backups
(``report.py``, ``xlsx.py``), the catalogue import (``catalogue.py``)."""

from pathlib import Path

from sqlmodel import Session

from bot.core import Workflow
from bot.flows.equipment import changes, repair, report, use
from bot.flows.equipment.models import (
    EquipmentBatch,
    EquipmentChange,
    EquipmentItem,
    EquipmentReport,
    EquipmentUse,
    RepairRequest,
)
from bot.flows.equipment.settings import EquipmentSettings
from bot.i18n import N_
from storage.models import School


def _demo_seed(session: Session, school: School, *, data_dir: Path) -> None:
    from bot.flows.equipment.catalogue import demo_seed

    demo_seed(session, school)


WORKFLOW = Workflow(
    name="equipment",
    title=N_("Equipment changes"),
    flows=(changes.FLOW, use.FLOW, repair.FLOW, report.FLOW, *changes.FLOWS, *repair.FLOWS),
    handlers=(*changes.HANDLERS, *use.HANDLERS, *repair.HANDLERS, *report.HANDLERS),
    approval_hooks={"equipment_repair": repair.on_decided},
    rules=(*changes.RULES, *report.RULES),
    tables=(EquipmentItem, EquipmentBatch, EquipmentChange, EquipmentUse, RepairRequest, EquipmentReport),
    settings=EquipmentSettings,
    demo_seed=_demo_seed,
)
