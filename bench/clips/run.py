"""Clip-cutting benchmark (not a test): prints its figures.

    python bench/clips/run.py [--root DIR] [--repeat 7] [--size 640x360] [--fps 2]

Builds a synthetic 24-hour and a 1-hour Frigate archive for one camera (1-minute segments; one
segment is rendered and hard-linked under every timestamp name), then cuts 60-second and 5-minute
clips from both, each in the same run as two baselines: (a) one naive
``ffmpeg -ss … -i one_file -t … -c copy`` on a single 10-minute file covering the window (its output
is checked to be as long as the window) and (b) reading the same bytes to /dev/null.  Prints the
clips' top-level MP4 layout (the index must precede the media data), then re-encodes clips to fit
size caps and checks the fill.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from media.clips import ClipOptions, cut_clip_sync  # noqa: E402
from media.recordings import Coverage, DurationCache, FolderSource  # noqa: E402
from media.synth import make_archive  # noqa: E402

CAMERA = "cong_truoc"
DAY0 = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)


def naive_cut(src: Path, offset: float, length: float, out: Path) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-ss", f"{offset:.3f}", "-i", str(src),
                    "-t", f"{length:.3f}", "-c", "copy", str(out)], check=True)


def probe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def top_level_boxes(path: Path) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    with open(path, "rb") as fh:
        total = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos + 8 <= total:
            fh.seek(pos)
            head = fh.read(16)
            size, kind = int.from_bytes(head[:4], "big"), head[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:
                size = total - pos
            if size < 8:
                break
            out.append((kind, size))
            pos += size
    return out


def read_bytes(paths: list[str], limit: int) -> None:
    left = limit
    with open(os.devnull, "wb") as sink:
        for p in paths:
            with open(p, "rb") as fh:
                while left > 0 and (chunk := fh.read(min(1 << 20, left))):
                    sink.write(chunk)
                    left -= len(chunk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=2)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="bench-clips-"))
    keep = args.root is not None
    try:
        run(root, args.repeat, args.size, args.fps)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def run(root: Path, repeat: int, size: str, fps: int) -> None:
    gop = fps * 2
    print(f"# clip benchmark  {datetime.now():%Y-%m-%d %H:%M}  {platform.node()}  {platform.machine()}  "
          f"{os.cpu_count()} CPU  python {platform.python_version()}")
    print(f"# video {size} @ {fps} fps, GOP {gop} frames, 1-minute segments, repeat {repeat} (medians)\n")
    t = time.perf_counter()
    make_archive(root / "day", CAMERA, DAY0, 24 * 3600, 60, layout="frigate", fps=fps, size=size, gop=gop,
                 reuse_one_segment=True)
    t_day = time.perf_counter() - t
    t = time.perf_counter()
    hour0 = DAY0 + timedelta(hours=12)
    make_archive(root / "hour", CAMERA, hour0, 3600, 60, layout="frigate", fps=fps, size=size, gop=gop,
                 reuse_one_segment=True)
    t_hour = time.perf_counter() - t
    # One 10-minute file for the naive baseline (same encoding settings), covering both windows
    # (hh:30:00-hh:40:00; the windows start at hh:30:20).
    long0 = hour0 + timedelta(minutes=30)
    long_file = make_archive(root / "long", CAMERA, long0, 600, 600, layout="frigate", fps=fps, size=size,
                             gop=gop)[0]
    n_day = sum(1 for p in (root / "day").rglob("*.mp4") if not p.name.startswith("."))
    print(f"archives: 24 h = {n_day} segments in {t_day:.1f}s, 1 h = 60 segments in {t_hour:.1f}s\n")

    out = root / "out"
    out.mkdir()
    results: dict[tuple[str, int], float] = {}
    header = (f"{'archive':7} {'clip':>5} {'segs':>4} {'dirs':>4} {'cover cold':>10} {'cover warm':>10} "
              f"{'cut':>7} {'naive':>7} {'read':>7} {'cut/naive':>9} {'total/naive':>11}")
    print(header)
    print("-" * len(header))
    coverages: dict[tuple[str, int], Coverage] = {}
    for length in (60, 300):
        start = hour0 + timedelta(minutes=30, seconds=20)   # mid-segment on both ends
        end = start + timedelta(seconds=length)
        offset = (start - long0).total_seconds()   # into the 10-minute file
        cold: dict[str, list[float]] = {"hour": [], "day": []}
        warm: dict[str, list[float]] = {"hour": [], "day": []}
        cut: dict[str, list[float]] = {"hour": [], "day": []}
        naive: list[float] = []
        read: dict[str, list[float]] = {"hour": [], "day": []}
        sources = {n: FolderSource(root / n, tz="UTC", max_segment_s=120, cache=DurationCache())
                   for n in ("hour", "day")}
        for name, src in sources.items():
            coverages[(name, length)] = src.coverage(CAMERA, start, end)
        # Interleaved so that drift on a shared machine hits every variant alike.
        for _ in range(repeat):
            for name, src in sources.items():
                fresh = FolderSource(root / name, tz="UTC", max_segment_s=120, cache=DurationCache())
                t = time.perf_counter()
                fresh.coverage(CAMERA, start, end)
                cold[name].append(time.perf_counter() - t)
                t = time.perf_counter()
                cov = src.coverage(CAMERA, start, end)
                warm[name].append(time.perf_counter() - t)
                target = out / f"{name}-{length}.mp4"
                t = time.perf_counter()
                cut_clip_sync(cov, target)
                cut[name].append(time.perf_counter() - t)
                t = time.perf_counter()
                read_bytes([s.path for s in cov.segments], target.stat().st_size)
                read[name].append(time.perf_counter() - t)
                t = time.perf_counter()
                naive_cut(long_file, offset, length, out / "naive.mp4")
                naive.append(time.perf_counter() - t)
        got = probe_duration(out / "naive.mp4")
        if abs(got - length) > gop / fps + 0.5:   # the baseline must copy the same window
            raise SystemExit(f"naive baseline cut {got:.1f}s instead of {length}s: fix the benchmark")
        nv = statistics.median(naive)
        for name in ("hour", "day"):
            cv, wm, ct, rd = (statistics.median(x[name]) for x in (cold, warm, cut, read))
            results[(name, length)] = ct + wm
            print(f"{name:7} {length:>4}s {len(coverages[(name, length)].segments):>4} "
                  f"{sources[name].dirs_listed:>4} {cv * 1000:>8.1f}ms {wm * 1000:>8.1f}ms {ct * 1000:>5.0f}ms "
                  f"{nv * 1000:>5.0f}ms {rd * 1000:>5.1f}ms {ct / nv:>9.2f} {(ct + wm) / nv:>11.2f}")
    print()
    for length in (60, 300):
        boxes = top_level_boxes(out / f"day-{length}.mp4")
        kinds = [k for k, _ in boxes]
        front = "moov" in kinds and "mdat" in kinds and kinds.index("moov") < kinds.index("mdat")
        print(f"{length:>3}s clip layout: {' '.join(f'{k}:{n}' for k, n in boxes)}  "
              f"(index before the media data: {'ok' if front else 'MISSED'})")
    for length in (60, 300):
        ratio = results[("day", length)] / results[("hour", length)]
        print(f"24 h vs 1 h archive, {length:>3}s clip (coverage + cut): {ratio:.2f}x  "
              f"(target within 20 %: {'ok' if abs(ratio - 1) <= 0.2 else 'MISSED'})")

    print("\nre-encode to fit a cap (5-minute clip, 24 h archive):")
    cov = coverages[("day", 300)]
    copy_size = (out / "day-300.mp4").stat().st_size
    for share in (0.5, 0.25, 0.1):
        cap = int(copy_size * share)
        t = time.perf_counter()
        res = cut_clip_sync(cov, out / f"fit-{share}.mp4", ClipOptions(size_cap=cap))
        took = time.perf_counter() - t
        fill = res.size / cap
        ok = res.size <= cap and fill >= 0.85
        print(f"  cap {cap / 1e6:6.2f} MB ({share:.0%} of the copy): {res.size / 1e6:6.2f} MB = {fill:.1%} of the cap, "
              f"{took:.1f}s, warnings={list(res.warnings)}  {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
