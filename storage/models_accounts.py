"""SQLModel tables of the accounts workflow (see storage/models.py for the shared ones)."""

from __future__ import annotations
