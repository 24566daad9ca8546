"""Workflows used by the tests as worked examples (``tests/test_new_workflow.py``): shaped exactly
like a package of ``bot/flows``, discovered with ``Registry().discover("tests.example_flows")``,
but not shipped: ``scripts/i18n.py`` scans only ``bot/``, ``storage/``, ``media/`` and ``main.py``, so
their msgids are in no catalogue and show in English."""
