"""Task format, deterministic packages and safe unpacking (no Docker needed)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ichain.errors import IChainError
from ichain.sandbox import (
    PackageError,
    ResultMeta,
    TaskFormatError,
    load_task,
    pack_bundle,
    pack_result,
    pack_task,
    read_result_meta,
    sha256_file,
    unpack,
    unpack_bundle,
    unpack_result,
    unpack_upload,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
META = {"chain_id": 31337, "market": "0x" + "ab" * 20, "task_id": 7, "provider": "0x" + "cd" * 20}


@pytest.fixture
def make_task(tmp_path):
    """Factory: a task folder from {relative path: text or bytes} (task.py added unless given)."""

    def make(files: dict[str, str | bytes] | None = None, name: str = "task") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        files = {"task.py": "import sys\nprint(sys.argv[1])\n", **(files or {})}
        for rel, content in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        return folder

    return make


@pytest.fixture
def make_archive(tmp_path):
    """Factory: a hand-made tar from (TarInfo, data) pairs, for hostile packages."""

    def make(members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w") -> Path:
        path = tmp_path / "evil.tar"
        with tarfile.open(path, mode) as tar:
            for info, data in members:
                info.size = len(data) if info.isreg() else 0
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        return path

    return make


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


# -- load_task -------------------------------------------------------------------------------------


def test_load_task__digits_example__manifest_values(tmp_path):
    spec = load_task(EXAMPLES / "digits")
    assert spec.entry == "task.py"
    assert spec.image == "ichain-runtime"
    assert spec.time_limit == 120
    assert spec.memory == 512 * 1024 * 1024
    assert spec.output_limit == 16 * 1024 * 1024
    assert spec.tolerance == 0.005
    assert set(spec.files) == {"task.py", "config.json", "ichain.json"}


def test_load_task__no_manifest__defaults(make_task):
    spec = load_task(make_task())
    assert (spec.entry, spec.image, spec.time_limit, spec.cpus, spec.tolerance) == (
        "task.py", "ichain-runtime", 600.0, 1.0, 0.0,
    )


@pytest.mark.parametrize(
    "files, message",
    [
        ({"task.py": "def broken(:\n"}, "syntax error"),
        ({"ichain.json": "{not json"}, "not valid JSON"),
        ({"ichain.json": '{"entry": "main.py"}'}, "entry script main.py not found"),
        ({"ichain.json": '{"entry": "../x.py"}'}, "inside the task folder"),
        ({"ichain.json": '{"time_limit": -1}'}, "time_limit"),
        ({"ichain.json": '{"memory": "lots"}'}, "memory"),
        ({"ichain.json": '{"memory": "4m"}'}, "below 16m"),
        ({"ichain.json": '{"timelimit": 5}'}, "unknown key(s) timelimit"),
        ({"ichain.json": '{"image": "Bad Image!"}'}, "image"),
        ({"ichain.json": "[1, 2]"}, "JSON object"),
    ],
)
def test_load_task__bad_input__one_line_task_format_error(make_task, files, message):
    with pytest.raises(TaskFormatError) as info:
        load_task(make_task(files))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, IChainError)


def test_load_task__no_manifest__no_gpus(make_task):
    spec = load_task(make_task())
    assert (spec.gpus, spec.gpu_memory) == (0, 0)


@pytest.mark.parametrize(
    "manifest, gpus, gpu_memory",
    [
        ({"gpus": 1}, 1, 0),
        ({"gpus": 16, "gpu_memory": "40g"}, 16, 40 * 1024**3),
        ({"gpus": 2, "gpu_memory": 8192}, 2, 8192 * 1024**2),
        ({"gpus": 0, "gpu_memory": "0"}, 0, 0),
        ({"image": "ichain-torch", "gpus": 1, "gpu_memory": "512m"}, 1, 512 * 1024**2),
    ],
)
def test_load_task__gpu_keys__in_the_spec(make_task, manifest, gpus, gpu_memory):
    spec = load_task(make_task({"ichain.json": json.dumps(manifest)}))
    assert (spec.gpus, spec.gpu_memory) == (gpus, gpu_memory)


@pytest.mark.parametrize("image", ["ichain-runtime", "ichain-torch"])
def test_load_task__catalog_runtime__accepted(make_task, image):
    assert load_task(make_task({"ichain.json": json.dumps({"image": image})})).image == image


@pytest.mark.parametrize(
    "manifest, message",
    [
        ({"gpus": 17}, "ichain.json: gpus must be a whole number in [0, 16], got 17"),
        ({"gpus": -1}, "ichain.json: gpus must be a whole number in [0, 16], got -1"),
        ({"gpus": 1.5}, "ichain.json: gpus must be a whole number in [0, 16], got 1.5"),
        ({"gpus": True}, "ichain.json: gpus must be a whole number in [0, 16], got True"),
        ({"gpus": "1"}, "ichain.json: gpus must be a whole number in [0, 16], got '1'"),
        ({"gpu_memory": "lots"}, "ichain.json: gpu_memory: expected a size like '512m', got 'lots'"),
        ({"gpu_memory": -1}, "ichain.json: gpu_memory: must be positive, got -1"),
        ({"gpu_memory": False}, "ichain.json: gpu_memory: expected a size like '512m', got False"),
        ({"image": "ichain-tensorflow"},
         "ichain.json: image must be one of ichain-runtime, ichain-torch, got 'ichain-tensorflow'"),
        ({"image": "ichain-torch:latest"},
         "ichain.json: image must be one of ichain-runtime, ichain-torch, got 'ichain-torch:latest'"),
        ({"image": "debian:bookworm"},
         "ichain.json: image must be one of ichain-runtime, ichain-torch, got 'debian:bookworm'"),
        ({"image": 7}, "ichain.json: image must be one of ichain-runtime, ichain-torch, got 7"),
    ],
)
def test_load_task__bad_gpu_key_or_unknown_runtime__exact_one_line_error(make_task, manifest, message):
    with pytest.raises(TaskFormatError) as info:
        load_task(make_task({"ichain.json": json.dumps(manifest)}))
    assert str(info.value) == message


def test_load_task__no_entry_script__task_format_error(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(TaskFormatError, match="entry script task.py not found"):
        load_task(folder)


def test_load_task__missing_folder__task_format_error(tmp_path):
    with pytest.raises(TaskFormatError, match="task folder not found"):
        load_task(tmp_path / "nope")


def test_load_task__symlink_inside__refused(make_task, tmp_path):
    folder = make_task()
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", folder / "link")
    with pytest.raises(TaskFormatError, match="symlink"):
        load_task(folder)


def test_load_task__fifo_inside__refused(make_task):
    folder = make_task()
    os.mkfifo(folder / "pipe")
    with pytest.raises(TaskFormatError, match="special file"):
        load_task(folder)


# -- deterministic packing -----------------------------------------------------------------------


def test_pack_task__same_files_other_mtimes_modes_paths__same_bytes(make_task, tmp_path):
    first = make_task({"data/a.csv": "1,2\n", "data/b/c.bin": bytes(range(256)), "é.txt": "unicode"})
    second = tmp_path / "copy-elsewhere"
    shutil.copytree(first, second)
    for path in second.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
        if path.is_file():
            path.chmod(0o600)
    h1 = pack_task(first, tmp_path / "a.tar")
    h2 = pack_task(second, tmp_path / "b.tar")
    assert h1 == h2 and len(h1) == 32
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert sha256_file(tmp_path / "a.tar") == h1


def test_pack_task__one_byte_changed__other_hash(make_task, tmp_path):
    folder = make_task({"data.txt": "abc"})
    h1 = pack_task(folder, tmp_path / "a.tar")
    (folder / "data.txt").write_text("abd")
    assert pack_task(folder, tmp_path / "b.tar") != h1


def test_pack_task__entries__sorted_and_normalised(make_task, tmp_path):
    folder = make_task({"z.txt": "z", "a/b.txt": "b", "m.txt": "m"})
    pack_task(folder, tmp_path / "t.tar")
    with tarfile.open(tmp_path / "t.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.mode for m in members if m.isreg()} == {0o644}
    assert {m.mode for m in members if m.isdir()} == {0o755}


def test_pack_task__invalid_task__nothing_written(make_task, tmp_path):
    folder = make_task({"task.py": "if\n"})
    with pytest.raises(TaskFormatError):
        pack_task(folder, tmp_path / "t.tar")
    assert not (tmp_path / "t.tar").exists() and not (tmp_path / "t.tar.part").exists()


_names = st.text(alphabet="abcdefghij_-.é", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.lists(_names, min_size=1, max_size=3).map(tuple), st.binary(max_size=300), max_size=6))
def test_pack_unpack__any_tree__round_trip_and_stable_hash(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("tree")
    folder = root / "task"
    folder.mkdir()
    (folder / "task.py").write_text("pass\n")
    expected = {"task.py": b"pass\n"}
    for parts, data in files.items():
        path = folder.joinpath(*parts)
        rel = "/".join(parts)
        # Skip trees where a file and a folder would share a path.
        if any(rel.startswith(k + "/") or k.startswith(rel + "/") for k in expected) or rel in expected:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[rel] = data
    h1 = pack_task(folder, root / "a.tar")
    h2 = pack_task(folder, root / "b.tar")
    assert h1 == h2
    written = unpack(root / "a.tar", root / "out")
    assert sorted(written) == sorted(expected)
    assert {rel: (root / "out" / rel).read_bytes() for rel in expected} == expected
    assert pack_task(root / "out", root / "c.tar") == h1


# -- safe unpack ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members, message",
    [
        ([(_info("/etc/evil"), b"x")], "absolute path"),
        ([(_info("../evil"), b"x")], "escapes"),
        ([(_info("a/../../evil"), b"x")], "escapes"),
        ([(_info("link", tarfile.SYMTYPE, "/etc/passwd"), b"")], "link"),
        ([(_info("link", tarfile.SYMTYPE, "inside.txt"), b"")], "link"),
        ([(_info("a.txt"), b"x"), (_info("hard", tarfile.LNKTYPE, "a.txt"), b"")], "link"),
        ([(_info("dev", tarfile.CHRTYPE), b"")], "device"),
        ([(_info("fifo", tarfile.FIFOTYPE), b"")], "device, FIFO"),
        ([(_info("a.txt"), b"x"), (_info("a.txt"), b"y")], "duplicate"),
    ],
)
def test_unpack__hostile_entry__refused_and_nothing_left(make_archive, tmp_path, members, message):
    archive = make_archive(members)
    dest = tmp_path / "dest"
    with pytest.raises(PackageError, match=message):
        unpack(archive, dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("dest")] == []
    assert not (tmp_path.parent / "evil").exists()


def test_unpack__over_size_cap__refused(make_archive, tmp_path):
    archive = make_archive([(_info("big"), b"x" * 5000)])
    with pytest.raises(PackageError, match="expands beyond 4096 bytes"):
        unpack(archive, tmp_path / "dest", max_bytes=4096)
    assert not (tmp_path / "dest").exists()


def test_unpack__over_entry_cap__refused(make_archive, tmp_path):
    archive = make_archive([(_info(f"f{i}"), b"") for i in range(11)])
    with pytest.raises(PackageError, match="more than 10 entries"):
        unpack(archive, tmp_path / "dest", max_entries=10)


def test_unpack__compressed__refused(make_archive, tmp_path):
    archive = make_archive([(_info("a"), b"x")], mode="w:gz")
    with pytest.raises(PackageError, match="plain tar"):
        unpack(archive, tmp_path / "dest")


def test_unpack__truncated__refused_and_nothing_left(make_task, tmp_path):
    pack_task(make_task({"data.bin": os.urandom(20000)}), tmp_path / "t.tar")
    data = (tmp_path / "t.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:12000])
    with pytest.raises(PackageError):
        unpack(tmp_path / "cut.tar", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_unpack__non_empty_destination__refused(make_task, tmp_path):
    pack_task(make_task(), tmp_path / "t.tar")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep").write_text("mine")
    with pytest.raises(PackageError, match="not an empty folder"):
        unpack(tmp_path / "t.tar", tmp_path / "dest")
    assert (tmp_path / "dest" / "keep").read_text() == "mine"


def test_unpack__task__readable_by_the_sandbox_user(make_task, tmp_path):
    pack_task(make_task({"d/x.txt": "x"}), tmp_path / "t.tar")
    unpack(tmp_path / "t.tar", tmp_path / "dest")
    assert (tmp_path / "dest").stat().st_mode & 0o005 == 0o005


# -- result packages --------------------------------------------------------------------------------


@pytest.fixture
def output_folder(tmp_path) -> Path:
    """The files a task wrote."""
    out = tmp_path / "output"
    (out / "sub").mkdir(parents=True)
    (out / "model.npz").write_bytes(b"\x93NUMPY" + bytes(100))
    (out / "sub" / "metrics.json").write_text('{"accuracy": 0.97}')
    return out


def test_pack_result__meta_inside__read_back(output_folder, tmp_path):
    digest = pack_result(output_folder, tmp_path / "r.tar", META)
    assert digest == sha256_file(tmp_path / "r.tar")
    assert read_result_meta(tmp_path / "r.tar") == ResultMeta(
        chain_id=31337, market="0x" + "ab" * 20, task_id=7, provider="0x" + "cd" * 20
    )


SALT = bytes(range(32))


def test_pack_result__same_files_other_provider_or_task__other_hash(output_folder, tmp_path):
    base = pack_result(output_folder, tmp_path / "a.tar", META, salt=SALT)
    assert pack_result(output_folder, tmp_path / "b.tar", META, salt=SALT) == base
    assert pack_result(output_folder, tmp_path / "c.tar", {**META, "provider": "0x" + "ee" * 20}, salt=SALT) != base
    assert pack_result(output_folder, tmp_path / "d.tar", {**META, "task_id": 8}, salt=SALT) != base
    assert pack_result(output_folder, tmp_path / "e.tar", {**META, "chain_id": 1}, salt=SALT) != base
    assert pack_result(output_folder, tmp_path / "f.tar", {**META, "market": "0x" + "ac" * 20}, salt=SALT) != base


def test_pack_result__no_salt_given__a_fresh_random_salt_each_time(output_folder, tmp_path):
    # The hash on chain must not be invertible by hashing candidate results (a 4-digit accuracy): every
    # package carries 32 random bytes, so the same files never give the same hash twice.
    hashes = {pack_result(output_folder, tmp_path / f"{i}.tar", META) for i in range(3)}
    assert len(hashes) == 3
    with tarfile.open(tmp_path / "0.tar") as tar:
        salt = tar.extractfile("salt").read()
    assert len(bytes.fromhex(salt.decode())) == 32


def test_pack_result__salt_of_wrong_length__package_error(output_folder, tmp_path):
    with pytest.raises(PackageError, match="32 bytes"):
        pack_result(output_folder, tmp_path / "r.tar", META, salt=b"short")


def test_pack_result__checksummed_address__same_hash_as_lowercase(output_folder, tmp_path):
    mixed = {**META, "market": "0x" + "AB" * 20}
    assert pack_result(output_folder, tmp_path / "a.tar", mixed, salt=SALT) == pack_result(
        output_folder, tmp_path / "b.tar", META, salt=SALT
    )


def test_pack_bundle__task_and_result__unpacked_back_byte_for_byte(make_task, output_folder, tmp_path):
    pack_task(make_task(), tmp_path / "t.tar")
    pack_result(output_folder, tmp_path / "r.tar", META)
    pack_bundle(tmp_path / "t.tar", tmp_path / "r.tar", tmp_path / "b.tar")
    task, result = unpack_bundle(tmp_path / "b.tar", tmp_path / "out")
    assert sha256_file(task) == sha256_file(tmp_path / "t.tar")
    assert sha256_file(result) == sha256_file(tmp_path / "r.tar")


def test_unpack_bundle__other_entries__package_error_and_nothing_left(output_folder, tmp_path):
    pack_result(output_folder, tmp_path / "r.tar", META)
    with pytest.raises(PackageError, match="not a bundle"):
        unpack_bundle(tmp_path / "r.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "meta, message",
    [
        ({k: v for k, v in META.items() if k != "provider"}, "lacks provider"),
        ({**META, "task_id": -1}, "task_id"),
        ({**META, "chain_id": "1"}, "chain_id"),
        ({**META, "market": "0x1234"}, "market"),
    ],
)
def test_pack_result__bad_meta__package_error(output_folder, tmp_path, meta, message):
    with pytest.raises(PackageError, match=message):
        pack_result(output_folder, tmp_path / "r.tar", meta)
    assert not (tmp_path / "r.tar").exists()


def test_unpack_result__files_back__exactly_the_output(output_folder, tmp_path):
    pack_result(output_folder, tmp_path / "r.tar", META)
    meta = unpack_result(tmp_path / "r.tar", tmp_path / "back")
    assert meta.task_id == 7
    got = sorted(p.relative_to(tmp_path / "back").as_posix() for p in (tmp_path / "back").rglob("*"))
    assert got == ["model.npz", "sub", "sub/metrics.json"]
    assert (tmp_path / "back" / "sub" / "metrics.json").read_text() == '{"accuracy": 0.97}'


def test_read_result_meta__task_package__package_error(make_task, tmp_path):
    pack_task(make_task(), tmp_path / "t.tar")
    with pytest.raises(PackageError, match="not a result package"):
        read_result_meta(tmp_path / "t.tar")


def test_read_result_meta__forged_meta__package_error(make_archive, tmp_path):
    archive = make_archive([(_info("meta.json"), json.dumps({"format": 99, **META}).encode())])
    with pytest.raises(PackageError, match="unknown format"):
        read_result_meta(archive)


# -- uploads (archives a person made) --------------------------------------------------------------


def _zip_file(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name, data in entries:
            zipped.writestr(name, data)
    return path


def test_unpack_upload__zip_with_a_folder__files_extracted(tmp_path):
    archive = _zip_file(tmp_path / "t.zip", [("t/task.py", b"print(1)\n"), ("t/data/x.csv", b"1,2\n")])
    assert unpack_upload(archive, tmp_path / "dest") == ["t/data/x.csv", "t/task.py"]
    assert (tmp_path / "dest" / "t" / "task.py").read_bytes() == b"print(1)\n"


def test_unpack_upload__zip_duplicate_entry__refused_and_nothing_left(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile lets a second entry of one name in
        archive = _zip_file(tmp_path / "t.zip", [("task.py", b"a"), ("task.py", b"b")])
    with pytest.raises(PackageError, match="duplicate"):
        unpack_upload(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["t.zip"]


def test_unpack_upload__gzip_expands_beyond_the_cap__refused_and_nothing_left(tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 1 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert archive.stat().st_size < 10_000  # a small upload...
    with pytest.raises(PackageError, match="expands beyond 65536 bytes"):  # ...that would fill the disk
        unpack_upload(archive, tmp_path / "dest", max_bytes=65536)
    assert [p.name for p in tmp_path.iterdir()] == ["bomb.tar.gz"]


def test_unpack_upload__truncated_gzip__one_line_error(tmp_path):
    whole = tmp_path / "whole.tar.gz"
    with tarfile.open(whole, "w:gz") as tar:
        info = tarfile.TarInfo("task.py")
        data = os.urandom(200_000)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:50_000])
    with pytest.raises(PackageError, match="not a readable archive") as err:
        unpack_upload(cut, tmp_path / "dest")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "dest").exists()
