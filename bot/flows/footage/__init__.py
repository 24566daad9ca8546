"""Camera footage (seeds 000/001 Điều 2–10): ask for a clip, the principal approves, the clip is cut
from the recordings and delivered with its chain of custody; the 15-day review; clips deleted after
their retention time unless kept as evidence.

* ``steps.py`` — the ``/camera`` conversation, the approval hook, the custody buttons, the rules;
* ``jobs.py`` — cutting and delivering a clip after the approval (and after a crash);
* ``models.py`` — ``Camera`` and ``FootageRequest``; ``cameras.py`` — the camera list import;
* ``settings.py`` — the school's footage settings (direct extraction, watermark);
* ``demo.py`` — demo cameras with synthetic recordings."""

from bot.core import TickJob, Workflow
from bot.flows.footage import demo, jobs, steps
from bot.flows.footage.models import Camera, FootageRequest
from bot.flows.footage.settings import FootageSettings
from bot.i18n import N_

WORKFLOW = Workflow(
    name="footage",
    title=N_("Camera footage"),
    flows=(steps.FLOW, *steps.FLOWS),
    handlers=steps.HANDLERS,
    approval_hooks={"footage": steps.on_decided},
    rules=steps.RULES,
    jobs=(TickJob("clip_retention", steps.retention_tick), TickJob("footage_recovery", jobs.recover)),
    tables=(Camera, FootageRequest),
    settings=FootageSettings,
    demo_seed=demo.seed_cameras,
    demo_media=demo.make_recordings,
)
