"""Content-addressed store for attachments and generated files under ``DATA_DIR/media``."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from pathlib import Path

from bot.core import FileRef

_EXT_BY_KIND = {"photo": ".jpg", "voice": ".ogg", "video": ".mp4", "video_note": ".mp4", "audio": ".mp3"}


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.inbox = self.root / "inbox"

    def _target(self, sha: str, ext: str) -> Path:
        return self.inbox / sha[:2] / f"{sha}{ext}"

    def store_bytes(self, data: bytes, *, kind: str, mime: str = "", file_name: str = "") -> FileRef:
        sha = hashlib.sha256(data).hexdigest()
        ext = Path(file_name).suffix.lower() if file_name else ""
        if not ext or len(ext) > 8:
            ext = (mimetypes.guess_extension(mime) if mime else None) or _EXT_BY_KIND.get(kind, ".bin")
        target = self._target(sha, ext)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        return FileRef(kind=kind, path=str(target), mime=mime or (mimetypes.guess_type(target.name)[0] or ""),
                       size=len(data), sha256=sha, file_name=file_name)

    def failed(self, *, kind: str, error: str, size: int = 0, file_name: str = "", mime: str = "") -> FileRef:
        return FileRef(kind=kind, path=None, size=size, file_name=file_name, mime=mime, error=error)
