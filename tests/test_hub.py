"""The data hub (divekit.data.hub): where files are found, checksums, downloads, safe archives.

Downloads come from an HTTP server on 127.0.0.1 started by the test, never from the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from divekit.data import hub
from divekit.data.hub import (
    Archive,
    ChecksumError,
    DataNotFoundError,
    DatasetSpec,
    RemoteFile,
    UnsafeArchiveError,
    cache_dir,
    extract_archive,
    fetch,
    sha1sum,
)

REAL_DATA = os.environ.get("DIVEKIT_DATA")  # read before the fixtures below clear it


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def files_under(folder: Path) -> list[Path]:
    return (
        sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
        if folder.exists()
        else []
    )


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache, no DIVEKIT_DATA, and no waiting between download retries."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DIVEKIT_DATA", raising=False)
    monkeypatch.setattr(hub, "RETRY_BACKOFF_SECONDS", 0.0)
    for proxy in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(proxy, raising=False)


class Server:
    """An HTTP server on 127.0.0.1 serving ``files`` (path -> bytes, or an error status code).

    It logs each requested path in ``requests``.
    """

    def __init__(self):
        self.files: dict[str, bytes | int] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path, 404)
                if isinstance(body, int):
                    self.send_error(body)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


@pytest.fixture
def server():
    server = Server()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def one_file_spec(
    url: str, content: bytes, name: str = "toy", filename: str = "data.bin"
) -> DatasetSpec:
    return DatasetSpec(name, (RemoteFile(filename, sha1(content), url),))


def unreachable_url() -> str:
    """A URL on a 127.0.0.1 port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.bin"


# ---------------------------------------------------------------------------------------------
# Where files are found.


def test_cache_dir_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "divekit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "divekit"


def test_sha1sum_matches_hashlib(tmp_path):
    data = os.urandom(3 * hub.CHUNK_BYTES + 17)  # spans several chunks
    (tmp_path / "f").write_bytes(data)
    assert sha1sum(tmp_path / "f") == sha1(data)


def test_data_dir_beats_divekit_data_beats_cache(tmp_path, monkeypatch):
    content = b"the same verified bytes everywhere"
    spec = one_file_spec(unreachable_url(), content)
    explicit = tmp_path / "explicit" / "toy" / "data.bin"
    shared = tmp_path / "shared" / "toy" / "data.bin"
    cached = cache_dir() / "toy" / "data.bin"
    for path in (explicit, shared, cached):
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    monkeypatch.setenv("DIVEKIT_DATA", str(tmp_path / "shared"))

    assert fetch(spec, "data.bin", data_dir=tmp_path / "explicit", progress=False) == explicit
    explicit.unlink()
    assert fetch(spec, "data.bin", data_dir=tmp_path / "explicit", progress=False) == shared
    shared.unlink()
    assert fetch(spec, "data.bin", data_dir=tmp_path / "explicit", progress=False) == cached


def test_data_dir_may_point_straight_at_the_data_set_folder(tmp_path):
    content = b"flat"
    (tmp_path / "data.bin").write_bytes(content)
    spec = one_file_spec(unreachable_url(), content)
    assert fetch(spec, data_dir=tmp_path, progress=False) == tmp_path
    assert fetch(spec, "data.bin", data_dir=tmp_path, progress=False) == tmp_path / "data.bin"


def test_wrong_copy_in_divekit_data_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    good, bad = b"good bytes", b"tampered bytes"
    spec = one_file_spec(unreachable_url(), good)
    shared = tmp_path / "shared" / "toy" / "data.bin"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(bad)
    (cache_dir() / "toy").mkdir(parents=True)
    (cache_dir() / "toy" / "data.bin").write_bytes(
        good
    )  # a good copy later in the order is not used
    monkeypatch.setenv("DIVEKIT_DATA", str(tmp_path / "shared"))

    with pytest.raises(ChecksumError) as raised:
        fetch(spec, "data.bin", progress=False)
    message = str(raised.value)
    assert "data.bin" in message and str(shared) in message
    assert sha1(good) in message and sha1(bad) in message
    assert "DIVEKIT_DATA" in message and "delete" in message


def test_unknown_names_list_what_exists():
    with pytest.raises(ValueError, match="known data sets are .*fashion-mnist"):
        fetch("fashion_mnist_typo")
    with pytest.raises(ValueError, match="its files are .*ptb.train.txt"):
        fetch("ptb", "ptb.training.txt")


def test_data_set_folder_must_be_one_folder(tmp_path, monkeypatch):
    a, b = b"first file", b"second file"
    spec = DatasetSpec(
        "pair",
        (
            RemoteFile("a.txt", sha1(a), unreachable_url()),
            RemoteFile("b.txt", sha1(b), unreachable_url()),
        ),
    )
    (tmp_path / "shared" / "pair").mkdir(parents=True)
    (tmp_path / "shared" / "pair" / "a.txt").write_bytes(a)
    (cache_dir() / "pair").mkdir(parents=True)
    (cache_dir() / "pair" / "b.txt").write_bytes(b)
    monkeypatch.setenv("DIVEKIT_DATA", str(tmp_path / "shared"))
    with pytest.raises(ValueError, match="different folders"):
        fetch(spec, progress=False)


def test_timemachine_comes_from_the_package_when_nothing_else_exists():
    path = fetch("timemachine", "timemachine.txt", progress=False)
    assert path.parent.name == "resources" and path.parent.parent == Path(hub.__file__).parent
    assert sha1sum(path) == "090b5e7e70c295757f55df93cb0a180b9691891a"
    assert not cache_dir().exists()


# ---------------------------------------------------------------------------------------------
# Downloads.


def test_download_is_verified_cached_and_not_repeated(server, monkeypatch):
    content = os.urandom(100_000)
    server.files["/data.bin"] = content
    spec = one_file_spec(server.url("/data.bin"), content)

    path = fetch(spec, "data.bin", progress=True)
    assert path == cache_dir() / "toy" / "data.bin"
    assert path.read_bytes() == content
    assert files_under(cache_dir()) == [path]  # no temp file left beside it
    assert server.requests == ["/data.bin"]

    hashes = []
    monkeypatch.setattr(hub, "sha1sum", lambda p: hashes.append(p) or sha1(Path(p).read_bytes()))
    assert fetch(spec, progress=False) == path.parent
    assert server.requests == ["/data.bin"]  # served from the cache
    assert hashes == []  # and not hashed again: the download already checked it


def test_what_a_killed_download_or_unpacking_left_is_removed_a_day_later(server):
    content = b"payload"
    name = "a-file-name-longer-than-thirty-two-characters.bin"  # atomic_open keeps the first 32 in its names
    server.files[f"/{name}"] = content
    folder = cache_dir() / "toy"
    folder.mkdir(parents=True)
    old, fresh = folder / f".{name[:32]}.k1ll3d.tmp", folder / f".{name[:32]}.gr0w1n.tmp"
    unpacking = cache_dir() / ".toy.k1ll3d.unpack"
    for path in (old, fresh):
        path.write_bytes(b"part")
    (unpacking / "sub").mkdir(parents=True)
    day_ago = time.time() - hub.ABANDONED_AFTER_SECONDS - 60
    for path in (old, unpacking):
        os.utime(path, (day_ago, day_ago))
    fetch(one_file_spec(server.url(f"/{name}"), content, filename=name), name, progress=False)
    assert not old.exists() and fresh.exists()  # another process's download may still be growing
    (cache_dir() / "toy.zip").write_bytes(make_zip({"toy/a.txt": b"a"}))
    extract_archive(cache_dir() / "toy.zip", cache_dir() / "toy", "zip", root="toy")
    assert not unpacking.exists() and (folder / "a.txt").read_bytes() == b"a"


def test_download_with_wrong_checksum_keeps_nothing(server):
    server.files["/data.bin"] = b"not what the registry promised"
    spec = one_file_spec(server.url("/data.bin"), b"the promised bytes")
    with pytest.raises(ChecksumError) as raised:
        fetch(spec, "data.bin", progress=False)
    assert sha1(b"the promised bytes") in str(raised.value)
    assert sha1(b"not what the registry promised") in str(raised.value)
    assert files_under(cache_dir()) == []


def test_wrong_cache_copy_is_deleted_and_downloaded_again(server):
    content = b"fresh download"
    server.files["/data.bin"] = content
    spec = one_file_spec(server.url("/data.bin"), content)
    cached = cache_dir() / "toy" / "data.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    assert fetch(spec, "data.bin", progress=False).read_bytes() == content
    assert server.requests == ["/data.bin"]


def test_offline_error_says_what_to_put_where():
    url = unreachable_url()
    spec = one_file_spec(url, b"anything")
    (cache_dir() / "toy").mkdir(parents=True)
    (cache_dir() / "toy" / "data.bin").write_bytes(b"a damaged copy, deleted before the download")
    with pytest.raises(DataNotFoundError) as raised:
        fetch(spec, "data.bin", progress=False)
    message = str(raised.value)
    assert url in message and sha1(b"anything") in message
    assert str(cache_dir() / "toy") in message and "DIVEKIT_DATA" in message
    assert "data.bin" in message and "Connection refused" in message
    assert files_under(cache_dir()) == []


def test_server_errors_are_retried_and_missing_files_are_not(server):
    server.files["/busy.bin"] = 503
    with pytest.raises(DataNotFoundError, match="503"):
        fetch(one_file_spec(server.url("/busy.bin"), b"x"), progress=False)
    assert server.requests == ["/busy.bin"] * hub.DOWNLOAD_TRIES

    server.requests.clear()
    with pytest.raises(DataNotFoundError, match="404"):
        fetch(one_file_spec(server.url("/gone.bin"), b"x", name="gone"), progress=False)
    assert server.requests == ["/gone.bin"]


# ---------------------------------------------------------------------------------------------
# Archives.


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def make_tar(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            payload = (data or {}).get(member.name)
            if payload is not None:
                member.size = len(payload)
            archive.addfile(member, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


def unsafe_archives(tmp_path: Path) -> dict[str, tuple[str, bytes]]:
    evil = tmp_path / "evil.txt"
    return {
        "zip-dotdot": (
            "zip",
            make_zip({"ok.txt": b"fine", "../evil.txt": b"x", "../../evil.txt": b"x"}),
        ),
        "zip-absolute": ("zip", make_zip({"ok.txt": b"fine", str(evil): b"x"})),
        "tar-dotdot": ("tar.gz", make_tar([tarfile.TarInfo("../evil.txt")], {"../evil.txt": b"x"})),
        "tar-symlink-out": (
            "tar.gz",
            make_tar(
                [
                    tarfile.TarInfo("ok.txt"),
                    link("escape", str(tmp_path)),
                    tarfile.TarInfo("escape/evil.txt"),
                ],
                {"ok.txt": b"fine", "escape/evil.txt": b"x"},
            ),
        ),
        "tar-relative-symlink-out": ("tar.gz", make_tar([link("escape", "../../..")])),
        "tar-hardlink-out": ("tar.gz", make_tar([link("hard", str(evil), tarfile.LNKTYPE)])),
        "tar-device": ("tar.gz", make_tar([link("null", "", tarfile.CHRTYPE)])),
    }


@pytest.mark.parametrize(
    "case",
    [
        "zip-dotdot",
        "zip-absolute",
        "tar-dotdot",
        "tar-symlink-out",
        "tar-relative-symlink-out",
        "tar-hardlink-out",
        "tar-device",
    ],
)
def test_unsafe_archive_is_refused_whole(tmp_path, case):
    kind, data = unsafe_archives(tmp_path)[case]
    archive_path = tmp_path / "archives" / f"bad.{kind}"
    archive_path.parent.mkdir()
    archive_path.write_bytes(data)
    target = tmp_path / "work" / "out"

    with pytest.raises(UnsafeArchiveError, match="nothing was extracted") as raised:
        extract_archive(archive_path, target, kind)
    assert str(archive_path) in str(raised.value)
    assert not target.exists()
    assert files_under(tmp_path / "work") == []  # no staging folder left either
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "work" / "evil.txt").exists()


def test_tar_extraction_keeps_links_that_stay_inside(tmp_path):
    archive_path = tmp_path / "good.tgz"
    archive_path.write_bytes(
        make_tar(
            [tarfile.TarInfo("root/a.txt"), link("root/alias.txt", "a.txt")],
            {"root/a.txt": b"alpha"},
        )
    )
    target = tmp_path / "out"
    (target / "old").mkdir(parents=True)  # existing content is merged with, not replaced
    assert extract_archive(archive_path, target, "tgz", root="root") == target
    assert (target / "alias.txt").read_bytes() == b"alpha" and (target / "alias.txt").is_symlink()
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "alias.txt", "old"]


def test_a_link_under_the_kept_folder_may_not_lead_out_of_it(tmp_path):
    # root/up -> .. stays inside the unpacked archive, but the kept folder is root/ alone: it would lead above the target
    archive_path = tmp_path / "links.tgz"
    archive_path.write_bytes(make_tar([tarfile.TarInfo("root/a.txt"), link("root/up", "..")], {"root/a.txt": b"a"}))
    target = tmp_path / "work" / "out"
    with pytest.raises(UnsafeArchiveError, match="'up' is a link that leads out of the folder; nothing was extracted"):
        extract_archive(archive_path, target, "tgz", root="root")
    assert files_under(tmp_path / "work") == []
    # a link left by an earlier unpack is replaced by the folder of the same name, not written through
    outside = tmp_path / "outside"
    outside.mkdir()
    target.mkdir(parents=True)
    (target / "up").symlink_to(outside)
    archive_path.write_bytes(make_tar([tarfile.TarInfo("root/up/b.txt")], {"root/up/b.txt": b"b"}))
    extract_archive(archive_path, target, "tgz", root="root")
    assert not (target / "up").is_symlink() and (target / "up" / "b.txt").read_bytes() == b"b"
    assert list(outside.iterdir()) == []


def test_a_target_named_with_dot_dot_unpacks(tmp_path):
    archive_path = tmp_path / "plain.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("r/a.txt", "alpha")
    (tmp_path / "w").mkdir()
    target = extract_archive(archive_path, tmp_path / "w" / ".." / "out", "zip", root="r")
    assert (tmp_path / "out" / "a.txt").read_text() == "alpha" and target == tmp_path / "out"


def test_archive_data_set_is_downloaded_unpacked_and_verified(server):
    train, test = b"train split\n", b"test split\n"
    server.files["/toy.zip"] = make_zip(
        {
            "toy/train.txt": train,
            "toy/sub/test.txt": test,
            "toy/README": b"not a data file",
            "other/x.txt": b"outside root",
        }
    )
    archive = Archive(server.url("/toy.zip"), sha1(server.files["/toy.zip"]), "zip", root="toy")
    spec = DatasetSpec(
        "toy",
        (
            RemoteFile("train.txt", sha1(train), archive.url),
            RemoteFile("sub/test.txt", sha1(test), archive.url),
        ),
        archive=archive,
    )

    folder = fetch(spec, progress=False)
    assert folder == cache_dir() / "toy"
    assert (folder / "train.txt").read_bytes() == train
    assert (folder / "sub" / "test.txt").read_bytes() == test
    assert not (folder / "other").exists()
    assert fetch(spec, "sub/test.txt", progress=False) == folder / "sub" / "test.txt"
    assert server.requests == ["/toy.zip"]

    (folder / "train.txt").unlink()  # a lost member is unpacked again from the cached archive
    assert fetch(spec, "train.txt", progress=False).read_bytes() == train
    assert server.requests == ["/toy.zip"]


def test_an_archive_in_divekit_data_serves_members_with_their_own_sha1(tmp_path, monkeypatch):
    """ptb, fra-eng and wikitext-2 register their members' SHA-1s: their archive, put under DIVEKIT_DATA,
    is unpacked offline (it was ignored, and the error asked for the loose files only)."""
    train = b"train split\n"
    zipped = make_zip({"toy/train.txt": train})
    url = unreachable_url().replace("data.bin", "toy.zip")
    spec = DatasetSpec("toy", (RemoteFile("train.txt", sha1(train), url),),
                       archive=Archive(url, sha1(zipped), "zip", root="toy"))
    with pytest.raises(DataNotFoundError, match="holds toy/train.txt or toy/toy.zip"):
        fetch(spec, progress=False)
    (tmp_path / "shared" / "toy").mkdir(parents=True)
    (tmp_path / "shared" / "toy" / "toy.zip").write_bytes(zipped)
    monkeypatch.setenv("DIVEKIT_DATA", str(tmp_path / "shared"))
    assert fetch(spec, "train.txt", progress=False).read_bytes() == train


def test_a_remote_files_sha1_must_be_one():
    """A SHA-256 or an upper-case SHA-1 there was checked at download only, so no copy ever matched it."""
    for checksum in ("A" * 40, "a" * 64):
        with pytest.raises(ValueError, match="the sha1 of f.bin must be a SHA-1 \\(40 lowercase hex digits\\)"):
            RemoteFile("f.bin", checksum, "https://example.org/f.bin")


def test_archive_member_with_wrong_checksum_is_not_kept(server):
    server.files["/toy.zip"] = make_zip({"toy/train.txt": b"other bytes"})
    archive = Archive(server.url("/toy.zip"), sha1(server.files["/toy.zip"]), "zip", root="toy")
    spec = DatasetSpec(
        "toy", (RemoteFile("train.txt", sha1(b"expected"), archive.url),), archive=archive
    )
    with pytest.raises(ChecksumError, match="train.txt"):
        fetch(spec, progress=False)
    assert not (cache_dir() / "toy" / "train.txt").exists()


def vouched_spec(url: str, archive_bytes: bytes) -> DatasetSpec:
    """A data set whose files have no SHA-1 of their own: the archive's vouches for them."""
    archive = Archive(url, sha1(archive_bytes), "zip", root="toy")
    return DatasetSpec(
        "toy", (RemoteFile("a/label.csv", None, url), RemoteFile("b/label.csv", None, url)), archive=archive
    )


TOY_MEMBERS = {"toy/a/label.csv": b"a\n", "toy/a/images/0.png": b"png", "toy/b/label.csv": b"b\n"}


def test_files_without_a_checksum_come_from_the_verified_archive_only(tmp_path, monkeypatch):
    zipped = make_zip(TOY_MEMBERS)
    spec = vouched_spec(unreachable_url().replace("data.bin", "toy.zip"), zipped)
    shared = tmp_path / "shared"
    (shared / "toy" / "a").mkdir(parents=True)
    (shared / "toy" / "a" / "label.csv").write_bytes(b"a loose copy that nothing can check\n")
    (shared / "toy" / "b").mkdir(parents=True)
    (shared / "toy" / "b" / "label.csv").write_bytes(b"b\n")
    monkeypatch.setenv("DIVEKIT_DATA", str(shared))
    with pytest.raises(DataNotFoundError, match=f"put toy.zip \\(SHA-1 {sha1(zipped)}\\) in"):
        fetch(spec, progress=False)  # loose files are never used, and the archive cannot be downloaded

    (shared / "toy" / "toy.zip").write_bytes(zipped)
    folder = fetch(spec, progress=False)
    assert folder == cache_dir() / "toy"  # unpacked into the cache, not read from the shared folder
    assert (folder / "a" / "label.csv").read_bytes() == b"a\n" and (folder / "a" / "images" / "0.png").is_file()
    assert (folder / ".toy.zip.unpacked").read_text().strip() == sha1(zipped)

    (shared / "toy" / "toy.zip").unlink()  # unpacked once: the cache copy is used from now on
    assert fetch(spec, "b/label.csv", progress=False) == folder / "b" / "label.csv"

    (folder / ".toy.zip.unpacked").write_text("0" * 40)  # unpacked from another archive: not trusted
    with pytest.raises(DataNotFoundError):
        fetch(spec, "a/label.csv", progress=False)


def test_a_wrong_archive_is_an_error_and_a_lost_member_is_unpacked_again(tmp_path, server):
    zipped = make_zip(TOY_MEMBERS)
    server.files["/toy.zip"] = zipped
    spec = vouched_spec(server.url("/toy.zip"), zipped)
    (tmp_path / "mine" / "toy").mkdir(parents=True)
    (tmp_path / "mine" / "toy" / "toy.zip").write_bytes(make_zip({"toy/a/label.csv": b"other"}))
    with pytest.raises(ChecksumError, match="found through the data_dir argument and is not used"):
        fetch(spec, data_dir=tmp_path / "mine", progress=False)
    assert server.requests == []

    folder = fetch(spec, progress=False)  # downloaded, verified, unpacked
    assert (folder / "a" / "label.csv").read_bytes() == b"a\n" and server.requests == ["/toy.zip"]
    (folder / "a" / "label.csv").unlink()
    assert fetch(spec, "a/label.csv", progress=False).read_bytes() == b"a\n"  # from the cached archive
    assert server.requests == ["/toy.zip"]


def test_a_file_without_a_checksum_needs_an_archive():
    with pytest.raises(ValueError, match="must come from the data set's archive"):
        DatasetSpec("toy", (RemoteFile("a.csv", None, "http://example.invalid/a.csv"),))


def plain_tar(members: dict[str, bytes]) -> bytes:
    """An uncompressed tar (VOC's form) of the given files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_data_set_known_by_its_archive_alone_is_fetched_as_a_folder(server, tmp_path, monkeypatch):
    content = plain_tar({"devkit/VOC/list.txt": b"a\nb\n", "devkit/VOC/img/a.jpg": b"jpeg", "other.txt": b"x"})
    server.files["/toy.tar"] = content
    sha256 = hashlib.sha256(content).hexdigest()  # a publisher that gives a SHA-256
    spec = DatasetSpec("toy", (), archive=Archive(server.url("/toy.tar"), sha256, "tar", root="devkit/VOC"))
    folder = fetch(spec, progress=False)
    assert folder == cache_dir() / "toy" and (folder / "img" / "a.jpg").read_bytes() == b"jpeg"
    assert not (folder / "other.txt").exists()
    assert fetch(spec, progress=False) == folder and server.requests == ["/toy.tar"]  # unpacked once
    with pytest.raises(ValueError, match="fetched as a whole folder"):
        fetch(spec, "list.txt")
    # the user's copy of the archive is verified and unpacked; an unpacked folder is taken as it is
    shared = tmp_path / "shared"
    (shared / "toy").mkdir(parents=True)
    (shared / "toy" / "toy.tar").write_bytes(b"damaged")
    monkeypatch.setenv("DIVEKIT_DATA", str(shared))
    with pytest.raises(ChecksumError, match="does not have the checksum"):
        fetch(spec, progress=False)
    (shared / "toy" / "toy.tar").unlink()
    (shared / "toy" / "list.txt").write_text("mine")
    assert fetch(spec, progress=False) == shared / "toy"
    with pytest.raises(ValueError, match="neither a SHA-1 .* nor a SHA-256"):
        Archive(server.url("/toy.tar"), "c58f30108f718f92721af3b95e74349a", "tar")  # an MD5
    with pytest.raises(ValueError, match="needs an archive"):
        DatasetSpec("toy", ())


def test_a_missing_folder_data_set_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv("DIVEKIT_DATA", raising=False)
    spec = DatasetSpec("toy", (), archive=Archive(unreachable_url(), "0" * 40, "tar", root="a/b"))
    with pytest.raises(DataNotFoundError, match="put the archive data.bin .* or its unpacked contents"):
        fetch(spec, progress=False)


# ---------------------------------------------------------------------------------------------
# The registry against the real data.


def test_registry_names_and_specs_are_consistent():
    assert set(hub.REGISTRY) == {
        "fashion-mnist",
        "mnist",
        "timemachine",
        "fra-eng",
        "wikitext-2",
        "snli",
        "aclImdb",
        "d2l-bert.small",
        "d2l-bert.base",
        "kaggle_house",
        "ptb",
        "airfoil",
        "banana-detection",
        "cifar-10",
        "hotdog",
        "voc2012",
    }
    for name, spec in hub.REGISTRY.items():
        assert spec.name == name and (spec.files or spec.archive) and spec.license and spec.description
        if spec.archive is not None:
            assert hub.checksum_algorithm(spec.archive.checksum) in ("sha1", "sha256")
        for remote in spec.files:
            checksum = remote.sha1 if remote.sha1 is not None else spec.archive.checksum  # vouched for by the archive
            assert len(checksum) == 40 and int(checksum, 16) >= 0
            if spec.archive is not None:
                assert remote.url == spec.archive.url
    with pytest.raises(TypeError):
        hub.REGISTRY["new"] = hub.REGISTRY["ptb"]


@pytest.mark.realdata
@pytest.mark.skipif(
    not REAL_DATA, reason="set DIVEKIT_DATA to the real data (e.g. ../shared/data)"
)
@pytest.mark.parametrize("name", sorted(hub.REGISTRY))
def test_real_data_matches_registry(name, monkeypatch):
    if not (Path(REAL_DATA) / name).is_dir():
        pytest.skip(f"$DIVEKIT_DATA has no {name}")
    monkeypatch.setenv("DIVEKIT_DATA", REAL_DATA)
    assert fetch(name, progress=False) == Path(REAL_DATA) / name
    assert not cache_dir().exists()  # nothing downloaded


@pytest.mark.realdata
@pytest.mark.skipif(
    not (REAL_DATA and (Path(REAL_DATA) / "ptb" / "ptb.zip").is_file()),
    reason="needs $DIVEKIT_DATA/ptb/ptb.zip",
)
def test_real_ptb_zip_unpacks_to_the_registered_files(tmp_path):
    spec = hub.REGISTRY["ptb"]
    assert sha1sum(Path(REAL_DATA) / "ptb" / "ptb.zip") == spec.archive.checksum
    out = extract_archive(
        Path(REAL_DATA) / "ptb" / "ptb.zip", tmp_path / "ptb", "zip", root=spec.archive.root
    )
    assert {remote.name: sha1sum(out / remote.name) for remote in spec.files} == {
        remote.name: remote.sha1 for remote in spec.files
    }
