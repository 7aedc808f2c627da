"""Build a United Cars release artifact: ``united-cars-<tag>.tar.gz`` plus its ``.sha256``.

Standard library only: rollout's demo sandbox imports this file by path, outside any venv.

The archive holds, at its top level, ``united_cars/`` (the package), ``release.json`` and, when
faults are given, ``faults.json``. It is reproducible: the same inputs give the same bytes, so a
checksum identifies a release and a rebuild can be verified against it.

    python build_release.py v2024.01.15-a1b2c3d --out dist [--commit SHA] [--faults JSON]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent / "united_cars"

# Conservative on purpose: the tag ends up in file names, URLs and remote shell commands.
TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")

_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def validate_tag(tag: str) -> str:
    # fullmatch, not match with "$": "$" would also accept a trailing newline.
    if not TAG_PATTERN.fullmatch(tag):
        raise ValueError(
            f"invalid release tag {tag!r}: use letters, digits and . _ + - "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return tag


def default_commit(tag: str) -> str:
    """The commit is the part after the last "-" (v2024.01.15-a1b2c3d -> a1b2c3d)."""
    _, sep, commit = tag.rpartition("-")
    return commit if sep and commit else "unknown"


def default_built_at() -> str:
    # SOURCE_DATE_EPOCH is the reproducible-builds convention for a fixed build time.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        dt.datetime.fromtimestamp(int(epoch), dt.UTC)
        if epoch
        else dt.datetime.now(dt.UTC).replace(microsecond=0)
    )
    return when.isoformat().replace("+00:00", "Z")


def _normalized(info: tarfile.TarInfo, mode: int) -> tarfile.TarInfo:
    # Everything that varies between machines and checkouts is fixed, for identical bytes.
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _normalized(tarfile.TarInfo(name), 0o644)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _package_entries() -> list[tuple[str, Path]]:
    """(archive name, source path) for the package's directories and files, sorted."""
    if not PACKAGE_DIR.is_dir():
        raise FileNotFoundError(f"package not found: {PACKAGE_DIR}")
    entries: list[tuple[str, Path]] = [("united_cars", PACKAGE_DIR)]
    for path in PACKAGE_DIR.rglob("*"):
        relative = path.relative_to(PACKAGE_DIR)
        if _SKIPPED_DIRS.intersection(relative.parts) or path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue  # a release holds plain files only
        entries.append((f"united_cars/{relative.as_posix()}", path))
    return sorted(entries)


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def build_release(
    tag: str,
    out_dir: Path,
    *,
    commit: str | None = None,
    faults: dict[str, object] | None = None,
    built_at: str | None = None,
) -> Path:
    """Write ``out_dir/united-cars-<tag>.tar.gz`` and its ``.sha256``; return the artifact path.

    ``built_at`` defaults to SOURCE_DATE_EPOCH or now; pass it for byte-identical rebuilds.
    """
    validate_tag(tag)
    if faults is not None and not isinstance(faults, dict):
        raise ValueError("faults must be a JSON object")
    release = {
        "version": tag,
        "commit": commit or default_commit(tag),
        "built_at": built_at or default_built_at(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"united-cars-{tag}.tar.gz"

    members: list[tuple[str, Path | bytes]] = list(_package_entries())
    members.append(("release.json", _json_bytes(release)))
    if faults is not None:
        members.append(("faults.json", _json_bytes(faults)))
    members.sort(key=lambda member: member[0])

    # Written to a temporary file and renamed: a reader never sees half an artifact.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{artifact.name}.", dir=out_dir)
    tmp = Path(tmp_name)
    try:
        # filename="" and mtime=0 keep the gzip header free of names and times.
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, source in members:
                if isinstance(source, bytes):
                    _add_bytes(tar, name, source)
                elif source.is_dir():
                    tar.addfile(_normalized(tar.gettarinfo(source, name), 0o755))
                else:
                    info = _normalized(tar.gettarinfo(source, name), 0o644)
                    with source.open("rb") as f:
                        tar.addfile(info, f)
        tmp.chmod(0o644)
        tmp.replace(artifact)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    # The format of `sha256sum`, so `sha256sum -c` verifies it.
    Path(f"{artifact}.sha256").write_text(f"{digest}  {artifact.name}\n", encoding="utf-8")
    return artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a United Cars release artifact.")
    parser.add_argument("tag", help="release tag, e.g. v2024.01.15-a1b2c3d")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--commit", help="commit SHA (default: the part after the last '-')")
    parser.add_argument("--faults", help="faults.json content, e.g. '{\"error_rate\": 0.5}'")
    parser.add_argument("--built-at", help="ISO timestamp (default: SOURCE_DATE_EPOCH or now)")
    args = parser.parse_args(argv)
    try:
        faults = json.loads(args.faults) if args.faults else None
        artifact = build_release(
            args.tag, args.out, commit=args.commit, faults=faults, built_at=args.built_at
        )
    except (ValueError, OSError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"build_release: {exc}", file=sys.stderr)
        return 2
    print(artifact)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
