"""Incidents: report from the phone (``report.py``; a guard's one-line quick path too), follow-up,
escalation and the written report (``service.py``, ``docx.py``), planned outages (``outage.py``)."""

from pathlib import Path

from sqlmodel import Session

from bot.core import Workflow
from bot.flows.incidents import outage, report, service
from bot.flows.incidents.models import Incident, IncidentAttachment, IncidentCounter, Outage
from bot.flows.incidents.settings import IncidentSettings
from bot.i18n import N_
from storage.models import School


def _demo_seed(session: Session, school: School, *, data_dir: Path) -> None:
    from bot.flows.incidents.service import demo_seed

    demo_seed(session, school)


WORKFLOW = Workflow(
    name="incidents",
    title=N_("Report an incident"),
    flows=(report.FLOW, outage.FLOW, *report.FLOWS),
    handlers=report.HANDLERS,
    rules=report.RULES,
    tables=(Incident, IncidentAttachment, IncidentCounter, Outage),
    settings=IncidentSettings,
    on_idle=report.quick_report,
    # cards kept for a recipient who had not linked the assistant reach them when they link
    on_person_linked=(service.deliver_waiting,),
    demo_seed=_demo_seed,
)
