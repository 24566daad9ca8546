"""Per-school incident settings (``School.settings["incidents"]``)."""

from __future__ import annotations

from typing import Any

from storage.models import School

# -- per-school settings --------------------------------------------------------------------------
#: Defaults; a school overrides any key in ``School.settings["incidents"]`` (``routes`` per group).
#: Area and system names are the school's own data (shown as they are), not interface text.
DEFAULTS: dict[str, Any] = {
    "areas": ["Cổng chính", "Cổng phụ", "Sân trường", "Nhà xe", "Hành lang", "Phòng học",
              "Phòng máy tính", "Thư viện", "Nhà ăn", "Phòng bảo vệ"],
    "routes": {
        "security": ["guard_lead", "bgh"],
        "camera": ["camera_unit", "guard_lead", "it"],
        "it": ["it", "principal"],
        "equipment": ["equipment", "dept_head"],
        "other": ["guard_lead", "principal"],
    },
    "urgent_to": ["bgh"],
    "quick_roles": ["guard", "guard_lead"],
    "urgent_escalate_minutes": 10,
    "normal_escalate_hours": 24,
    "hold_normal_at_night": True,
    "max_attachments": 10,
    "authority": "Phòng Giáo dục và Đào tạo",
    "authority_it": "Sở Giáo dục và Đào tạo",
    "parent_agency": "",
    "report_place": "",
    "doc_code": "",
    "outage_systems": ["Thư điện tử công vụ", "Cổng thông tin điện tử", "Phần mềm quản lý trường học",
                       "Mạng Internet / Wi-Fi", "Hệ thống camera", "Cơ sở dữ liệu ngành"],
}


def conf(school: School | None) -> dict[str, Any]:
    """The school's incident settings merged over :data:`DEFAULTS` (bad values fall back)."""
    raw = (school.settings or {}).get("incidents", {}) if school is not None else {}
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                           for k, v in DEFAULTS.items()}
    if not isinstance(raw, dict):
        return out
    for key, default in DEFAULTS.items():
        value = raw.get(key)
        if value is None:
            continue
        if key == "routes" and isinstance(value, dict):
            for g, tokens in value.items():
                if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
                    out["routes"][g] = list(tokens)
        elif isinstance(default, bool):
            if isinstance(value, bool):
                out[key] = value
        elif isinstance(default, int):
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out[key] = value
        elif isinstance(default, list):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out[key] = [v for v in value if v.strip()]
        elif isinstance(value, str):
            out[key] = value
    return out
