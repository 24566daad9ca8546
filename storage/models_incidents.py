"""SQLModel tables of the incidents workflow (see storage/models.py for the shared ones)."""

from __future__ import annotations
