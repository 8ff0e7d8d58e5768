"""Uploads from the web page: a task archive is unpacked safely or refused with one clear line."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from ichain.config import IChainConfig
from ichain.web.errors import WebInputError
from ichain.web.service import WebService


@pytest.fixture
def service(tmp_path):
    """A page with no account and no market: uploads need neither."""
    return WebService(account=None, market_factory=lambda: None, config=IChainConfig(state_dir=tmp_path / "state"),
                      tasks_root=tmp_path / "tasks")


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    buf.seek(0)
    return buf


def _tar(entries: dict[str, bytes], *, gz: bool = False, link: str | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
    buf.seek(0)
    return buf


def test_stage_upload__zip_with_one_top_folder__that_folder_is_the_task(service):
    staged = service.stage_upload("digits.zip", _zip({"digits/task.py": b"print(1)\n", "digits/data/x.csv": b"1,2\n"}))
    assert staged.name == "digits"
    assert (staged.folder / "task.py").read_bytes() == b"print(1)\n"
    assert (staged.folder / "data" / "x.csv").read_bytes() == b"1,2\n"


def test_stage_upload__flat_tar_gz__files_at_task_root(service):
    staged = service.stage_upload("t.tar.gz", _tar({"task.py": b"x", "manifest.json": b"{}"}, gz=True))
    assert sorted(p.name for p in staged.folder.iterdir()) == ["manifest.json", "task.py"]
    assert staged.name == "t"


@pytest.mark.parametrize(
    "filename, payload, message",
    [
        ("evil.zip", lambda: _zip({"../escape.py": b"x"}), "unsafe path"),
        ("evil.zip", lambda: _zip({"/abs.py": b"x"}), "unsafe path"),
        ("evil.tar", lambda: _tar({"a/../../escape": b"x"}), "unsafe path"),
        ("link.zip", lambda: _zip({"task.py": b"x"}, symlink="passwd"), "not a plain file"),
        ("link.tar", lambda: _tar({"task.py": b"x"}, link="passwd"), "not a plain file"),
        ("broken.zip", lambda: io.BytesIO(b"PK\x03\x04 not really a zip"), "not a readable archive"),
        ("notes.txt", lambda: io.BytesIO(b"hello"), "send the task folder as a .zip"),
    ],
)
def test_stage_upload__bad_archive__one_line_error_nothing_left(service, filename, payload, message):
    with pytest.raises(WebInputError, match=message) as err:
        service.stage_upload(filename, payload())
    assert "\n" not in str(err.value)
    left = list(service.uploads_dir.glob("*/*")) if service.uploads_dir.exists() else []
    assert left == []


def test_submit__no_account__clear_error(service):
    from ichain.web.errors import NoAccount

    with pytest.raises(NoAccount, match="No account selected"):
        service.submit(folder="x", price="0.01", validator_fee="0.001")


@pytest.mark.parametrize("price, message", [("abc", "not a number"), ("-1", "positive"),
                                           ("0.0000000000000000001", "18 decimals")])
def test_parse_eth__bad_amount__names_the_field(price, message):
    from ichain.web.format import parse_eth

    with pytest.raises(WebInputError, match=f"Price: .*{message}"):
        parse_eth(price, "Price")
