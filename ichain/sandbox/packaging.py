"""Deterministic task/result packages and their safe extraction.

A package is a plain (uncompressed) POSIX tar: entries sorted by path, every mtime 0, uid/gid 0, no
user/group names, mode 0644 for files and 0755 for folders. The same files therefore always give the
same bytes and the same sha256, which is what goes on chain. Compression is left out on purpose: its
output depends on the zlib version, and the transfer layer encrypts the bytes anyway.

A result package holds ``meta.json`` (chain id, market address, task id, provider address, in canonical
JSON) followed by the result files under ``output/`` and a ``salt`` file (32 random bytes, hex): its hash
therefore binds the files to one task of one market and one provider, so a copied hash cannot be passed off
for another task or provider, and the salt keeps a low-entropy result (a 4-digit accuracy) from being
recovered by hashing every candidate: the requester holds nothing but the hash before the accept.

A bundle (``pack_bundle``) is what a provider hosts for its validator: the task package and the result
package in one plain tar (``task.tar``, ``result.tar``), so the validator fetches both from the provider in
one transfer and never depends on the requester still hosting the task.

``unpack`` trusts nothing: it refuses absolute paths, ``..``, links of any kind, devices and FIFOs,
duplicate names, and stops at size and entry-count caps; it extracts into a fresh ``DEST.part-*``
folder and renames it into place only when everything was extracted. ``unpack_upload`` applies the same
rules to an archive a person made (zip, tar, gzipped tar), such as a task folder uploaded to the web page.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from ichain.files import sha256_file
from ichain.sandbox.errors import PackageError
from ichain.sandbox.task import GiB, load_task, scan_folder

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

META_NAME = "meta.json"
OUTPUT_PREFIX = "output"
SALT_NAME = "salt"
SALT_BYTES = 32
BUNDLE_TASK = "task.tar"
BUNDLE_RESULT = "result.tar"
META_FORMAT = 1
DEFAULT_MAX_BYTES = 4 * GiB
DEFAULT_MAX_ENTRIES = 100_000
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_COPY_CHUNK = 1024 * 1024


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes everything written through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        self.sha.update(data)
        return self.raw.write(data)


def _tarinfo(name: str, *, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode = 0o755 if is_dir else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_package(out_file: str | Path, entries: Sequence[tuple[str, Path | bytes | None]]) -> bytes:
    """Write ``entries`` (name, file path | bytes | None for a folder) as a tar; return its sha256.

    Written to ``OUT.part`` then renamed, so a half-written package is never taken as whole.
    """
    out = Path(out_file)
    part = out.with_name(out.name + ".part")
    try:
        with open(part, "wb") as raw:
            sink = _HashingWriter(raw)
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
                for name, source in entries:
                    if source is None:
                        tar.addfile(_tarinfo(name, is_dir=True))
                    elif isinstance(source, bytes):
                        tar.addfile(_tarinfo(name, size=len(source)), io.BytesIO(source))
                    else:
                        with open(source, "rb") as handle:
                            size = os.fstat(handle.fileno()).st_size
                            tar.addfile(_tarinfo(name, size=size), handle)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(part, out)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return sink.sha.digest()


def _folder_entries(folder: Path, prefix: str = "") -> list[tuple[str, Path | None]]:
    files, dirs, _size = scan_folder(folder, "package")
    join = (lambda rel: f"{prefix}/{rel}") if prefix else (lambda rel: rel)
    entries: list[tuple[str, Path | None]] = [(join(d), None) for d in dirs]
    entries += [(join(f), folder / f) for f in files]
    return sorted(entries, key=lambda e: e[0])


def pack_task(folder: str | Path, out_file: str | Path) -> bytes:
    """Validate a task folder and pack it deterministically.

    Args:
        folder: the task folder (see ``load_task``).
        out_file: where to write the tar.

    Returns:
        sha256 of the package bytes (32 bytes), the on-chain task hash.

    Raises:
        TaskFormatError: the folder is not a valid task.
    """
    spec = load_task(folder)
    return _write_package(out_file, _folder_entries(spec.folder))


@dataclasses.dataclass(frozen=True)
class ResultMeta:
    """What a result package is bound to.

    Attributes:
        chain_id: the chain's id.
        market: TaskMarket address (lower-case hex).
        task_id: the task's id in that market.
        provider: the provider's address (lower-case hex).
    """

    chain_id: int
    market: str
    task_id: int
    provider: str

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): the bytes stored in the package."""
        body = {"format": META_FORMAT, **dataclasses.asdict(self)}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def make_meta(meta: dict[str, Any] | ResultMeta) -> ResultMeta:
    """Check and normalise result metadata (``chain_id``, ``market``, ``task_id``, ``provider``).

    Raises:
        PackageError: a field is missing or malformed.
    """
    if isinstance(meta, ResultMeta):
        return meta
    if not isinstance(meta, dict):
        raise PackageError("result meta must be a dict with chain_id, market, task_id, provider")
    missing = sorted({"chain_id", "market", "task_id", "provider"} - set(meta))
    if missing:
        raise PackageError(f"result meta lacks {', '.join(missing)}")
    return ResultMeta(
        chain_id=_meta_count(meta, "chain_id"),
        market=_meta_address(meta, "market"),
        task_id=_meta_count(meta, "task_id"),
        provider=_meta_address(meta, "provider"),
    )


def _meta_count(meta: dict[str, Any], key: str) -> int:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PackageError(f"result meta: {key} must be a non-negative integer, got {value!r}")
    return value


def _meta_address(meta: dict[str, Any], key: str) -> str:
    value = str(meta[key])
    if not _ADDRESS.match(value):
        raise PackageError(f"result meta: {key} must be a 0x-prefixed 20-byte address, got {value!r}")
    return value.lower()


def pack_result(
    output_folder: str | Path, out_file: str | Path, meta: dict[str, Any] | ResultMeta, *, salt: bytes | None = None
) -> bytes:
    """Pack result files deterministically together with what they are a result of and a random salt.

    Args:
        output_folder: the files the task wrote (``RunResult.output_folder``).
        out_file: where to write the tar.
        meta: ``chain_id``, ``market``, ``task_id``, ``provider`` (stored as ``meta.json`` inside).
        salt: 32 bytes stored as the ``salt`` entry (default: fresh random bytes, so the hash on chain
            cannot be inverted by hashing candidate results; pass one to reproduce a package).

    Returns:
        sha256 of the package bytes (32 bytes): the ``resultHash`` committed on chain.

    Raises:
        PackageError: bad meta or output folder.
        TaskFormatError: the output folder holds links or special files.
    """
    bound = make_meta(meta)
    folder = Path(output_folder)
    if not folder.is_dir():
        raise PackageError(f"output folder not found: {folder}")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else bytes(salt)
    if len(salt) != SALT_BYTES:
        raise PackageError(f"result salt must be {SALT_BYTES} bytes, got {len(salt)}")
    entries: list[tuple[str, Path | bytes | None]] = [(META_NAME, bound.to_json()), (OUTPUT_PREFIX, None)]
    entries += _folder_entries(folder, OUTPUT_PREFIX)
    entries.append((SALT_NAME, salt.hex().encode()))
    return _write_package(out_file, entries)


def pack_bundle(task_archive: str | Path, result_archive: str | Path, out_file: str | Path) -> bytes:
    """Put a task package and its result package in one plain tar (what a provider hosts for its validator).

    Args:
        task_archive: the task package (its sha256 is the task hash on chain).
        result_archive: the result package (its sha256 is the result hash on chain).
        out_file: where to write the bundle.

    Returns:
        sha256 of the bundle bytes.
    """
    return _write_package(out_file, [(BUNDLE_TASK, Path(task_archive)), (BUNDLE_RESULT, Path(result_archive))])


def unpack_bundle(bundle: str | Path, dest_folder: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Path, Path]:
    """Extract a bundle under :func:`unpack`'s rules; returns the paths of its task and result packages.

    The caller checks both against the hashes on chain: nothing in a bundle is trusted.

    Raises:
        PackageError: as ``unpack``, or the bundle holds anything but ``task.tar`` and ``result.tar``.
    """
    dest = Path(dest_folder)
    try:
        names = unpack(bundle, dest, max_bytes=max_bytes, max_entries=2)
    except PackageError as err:
        raise PackageError(f"not a bundle: {err}") from None
    if names != sorted((BUNDLE_TASK, BUNDLE_RESULT)):
        shutil.rmtree(dest, ignore_errors=True)
        raise PackageError(f"not a bundle (expected {BUNDLE_TASK} and {BUNDLE_RESULT}, got {', '.join(names) or 'nothing'})")
    return dest / BUNDLE_TASK, dest / BUNDLE_RESULT




def _open_tar(archive: str | Path) -> tarfile.TarFile:
    try:
        # "r:" only: packages are never compressed (no decompression bombs to worry about).
        return tarfile.open(archive, mode="r:", encoding="utf-8")
    except FileNotFoundError:
        raise PackageError(f"package not found: {archive}") from None
    except (tarfile.TarError, OSError) as exc:
        raise PackageError(f"not an iChain package (plain tar expected): {archive}: {exc}") from None


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or "\x00" in name or "\\" in name:
        raise PackageError(f"package entry has an invalid name: {name!r}")
    if path.is_absolute():
        raise PackageError(f"package entry has an unsafe path (an absolute path): {name!r}")
    parts = [p for p in path.parts if p != "."]
    if not parts or ".." in parts:
        raise PackageError(f"package entry has an unsafe path (it escapes the destination): {name!r}")
    return PurePosixPath(*parts)


@dataclasses.dataclass(frozen=True)
class _Member:
    """One entry of an archive, whatever its format: what extraction needs to judge and copy it."""

    name: str
    kind: str  # "dir", "file", "link" or "special" (device, FIFO...)
    size: int
    open: Callable[[], IO[bytes] | None]


def _tar_members(tar: tarfile.TarFile) -> Iterator[_Member]:
    for member in tar:
        if member.issym() or member.islnk():
            kind = "link"
        elif member.isdir():
            kind = "dir"
        elif member.isreg():
            kind = "file"
        else:
            kind = "special"
        yield _Member(member.name, kind, member.size, functools.partial(tar.extractfile, member))


_ZIP_KINDS = {0: "file", 0o100000: "file", 0o040000: "dir", 0o120000: "link"}


def _zip_members(archive: zipfile.ZipFile) -> Iterator[_Member]:
    for info in archive.infolist():
        # The Unix file type sits in the high bits of external_attr (0 when the archiver wrote none).
        kind = "dir" if info.is_dir() else _ZIP_KINDS.get((info.external_attr >> 16) & 0o170000, "special")
        yield _Member(info.filename, kind, info.file_size, functools.partial(archive.open, info))


def _extract(members: Iterator[_Member], dest_folder: str | Path, *, max_bytes: int, max_entries: int) -> list[str]:
    """Extract ``members`` into ``dest_folder`` under the rules of :func:`unpack`; nothing is left on failure."""
    dest = Path(dest_folder)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise PackageError(f"destination exists and is not an empty folder: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=dest.name + ".part-", dir=dest.parent))
    seen: set[PurePosixPath] = set()
    written: list[str] = []
    total = 0
    try:
        for count, member in enumerate(members, start=1):
            if count > max_entries:
                raise PackageError(f"package has more than {max_entries} entries")
            rel = _safe_name(member.name)
            if rel in seen:
                raise PackageError(f"package has a duplicate entry: {member.name!r}")
            seen.add(rel)
            if member.kind == "link":
                raise PackageError(f"package entry is not a plain file (a link): {member.name!r}")
            if member.kind == "special":
                raise PackageError(
                    f"package entry is not a plain file (a device, FIFO or other special file): {member.name!r}"
                )
            target = staging.joinpath(*rel.parts)
            if member.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            total += member.size
            if total > max_bytes:
                raise PackageError(f"package expands beyond {max_bytes} bytes")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = member.open()
            if source is None:
                raise PackageError(f"package entry unreadable: {member.name!r}")
            # O_EXCL|O_NOFOLLOW: never write through something already there.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with source, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, _COPY_CHUNK)
            written.append(rel.as_posix())
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; the sandbox user must read a task
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(written)


def unpack(
    archive: str | Path,
    dest_folder: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[str]:
    """Extract a package safely into ``dest_folder`` (which must not exist or be empty).

    Args:
        archive: the tar file.
        dest_folder: where the files go; created.
        max_bytes: cap on the total size of the extracted files.
        max_entries: cap on the number of entries.

    Returns:
        The extracted files (sorted relative POSIX paths).

    Raises:
        PackageError: the archive is not a plain tar, or holds an absolute path, ``..``, a link, a
            device or FIFO, a duplicate name, or exceeds a cap. Nothing is left at ``dest_folder``.
    """
    with _open_tar(archive) as tar:
        try:
            return _extract(_tar_members(tar), dest_folder, max_bytes=max_bytes, max_entries=max_entries)
        except (tarfile.TarError, EOFError) as exc:
            raise PackageError(f"package is truncated or corrupt: {exc}") from None


def unpack_upload(
    archive: str | Path,
    dest_folder: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[str]:
    """Extract an archive a person made (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``) under :func:`unpack`'s rules.

    Unlike a package, such an archive may be compressed; the size cap counts the extracted bytes.

    Raises:
        PackageError: not a readable zip or tar, or an entry :func:`unpack` refuses. Nothing is left at
            ``dest_folder``.
    """
    unreadable = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)
    try:
        opened: zipfile.ZipFile | tarfile.TarFile = (
            zipfile.ZipFile(archive) if zipfile.is_zipfile(archive) else tarfile.open(archive, mode="r:*")
        )
    except FileNotFoundError:
        raise PackageError(f"archive not found: {archive}") from None
    except (*unreadable, OSError) as err:
        raise PackageError(f"not a readable archive ({type(err).__name__})") from None
    members = _zip_members(opened) if isinstance(opened, zipfile.ZipFile) else _tar_members(opened)
    with opened:
        try:
            return _extract(members, dest_folder, max_bytes=max_bytes, max_entries=max_entries)
        except unreadable as err:  # a corrupt member's data, found while copying it
            raise PackageError(f"not a readable archive ({type(err).__name__})") from None


def read_result_meta(archive: str | Path) -> ResultMeta:
    """Read the binding metadata of a result package without extracting it.

    Raises:
        PackageError: not a result package, or its ``meta.json`` is malformed.
    """
    with _open_tar(archive) as tar:
        try:
            first = tar.next()
        except tarfile.TarError as exc:
            raise PackageError(f"package is corrupt: {exc}") from None
        if first is None or first.name != META_NAME or not first.isreg() or first.size > 4096:
            raise PackageError(f"not a result package (no {META_NAME} first): {archive}")
        handle = tar.extractfile(first)
        raw = handle.read() if handle else b""
    try:
        body = json.loads(raw)
    except ValueError:
        raise PackageError(f"result package has a malformed {META_NAME}") from None
    if not isinstance(body, dict) or body.pop("format", None) != META_FORMAT:
        raise PackageError(f"result package {META_NAME} has an unknown format")
    return make_meta(body)


def unpack_result(archive: str | Path, dest_folder: str | Path, **caps: int) -> ResultMeta:
    """Extract a result package's files (``output/``) into ``dest_folder`` and return its meta.

    ``dest_folder`` then holds exactly the files the task wrote, ready for ``Sandbox.validate``.

    Raises:
        PackageError: as ``unpack`` and ``read_result_meta``.
    """
    meta = read_result_meta(archive)
    dest = Path(dest_folder)
    scratch = dest.with_name(dest.name + ".unpack")
    if scratch.exists():
        shutil.rmtree(scratch)
    unpack(archive, scratch, **caps)
    try:
        extra = sorted(p.name for p in scratch.iterdir() if p.name not in (META_NAME, OUTPUT_PREFIX, SALT_NAME))
        if extra:
            raise PackageError(f"result package has unexpected top-level entries: {', '.join(extra[:3])}")
        output = scratch / OUTPUT_PREFIX
        if not output.is_dir():
            raise PackageError(f"result package has no {OUTPUT_PREFIX}/ folder")
        if dest.exists():
            if any(dest.iterdir()):
                raise PackageError(f"destination exists and is not an empty folder: {dest}")
            dest.rmdir()
        os.replace(output, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return meta
