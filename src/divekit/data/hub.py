"""The data hub: which files each data set needs, where to find them, and how to get them safely.

The book downloads its data sets from a handful of URLs and checks each one against a SHA-1.
This module does the same, but it looks on disk before it goes to the network, it never uses a
file whose SHA-1 is wrong, and it never leaves a half-written file behind. ``fetch`` looks for
each file of a data set in this order:

1. ``data_dir/<name>/<file>`` or ``data_dir/<file>``, for an explicit ``data_dir`` argument;
2. ``$DIVEKIT_DATA/<name>/<file>``, a shared folder of data sets (one sub-folder per data set);
3. ``cache_dir()/<name>/<file>``, where downloads go;
4. a copy shipped inside the package (``divekit/data/resources/``), where the data set has one;
5. the canonical URL, downloaded (and, for an archive, safely unpacked) into the cache.

A copy found in 1 or 2 with the wrong SHA-1 is an error, because only the user can say which copy
is right. A wrong copy in the cache is deleted and downloaded again.

Some publishers give a checksum of the archive only, not of its files, and some give a SHA-256
rather than a SHA-1 (CIFAR-10: Keras checks the SHA-256 of the authors' archive). Such a data set
lists no files: ``fetch(name)`` returns its unpacked folder, taken as it is from 1 or 2 (the
archive itself, dropped there, is verified and unpacked into the cache), or else unpacked in the
cache from the verified archive. A checksum's length says its algorithm: 40 hex digits SHA-1,
64 SHA-256.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from tqdm import tqdm

from divekit.io import atomic_open

__all__ = [
    "REGISTRY",
    "Archive",
    "ChecksumError",
    "DataNotFoundError",
    "DatasetSpec",
    "RemoteFile",
    "UnsafeArchiveError",
    "cache_dir",
    "checksum_algorithm",
    "extract_archive",
    "fetch",
    "sha1sum",
]

CHUNK_BYTES = 1 << 20
DOWNLOAD_TRIES = 3
RETRY_BACKOFF_SECONDS = 1.0  # wait backoff * attempt before the next try
REQUEST_TIMEOUT_SECONDS = 30.0  # per connect and per read, not for the whole download
TAR_MODES = {"tar": "r:", "tar.gz": "r:gz", "tgz": "r:gz"}  # archive kind -> tarfile's mode
ARCHIVE_KINDS = ("zip", *TAR_MODES)
CHECKSUM_ALGORITHMS = {40: "sha1", 64: "sha256"}  # hex digits -> hashlib's name
UNPACKED_MARK = ".divekit-unpacked"  # written into a cache folder once its archive is fully unpacked

# Errors that a flaky network or a missing server raises; disk errors are not among them.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class ChecksumError(ValueError):
    """A file's SHA-1 differs from the one the registry expects."""


class DataNotFoundError(RuntimeError):
    """A file is on no local path and could not be downloaded."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder, or is a device file."""


def checksum_algorithm(checksum: str) -> str:
    """hashlib's name of the algorithm that makes checksums like ``checksum`` (by its length)."""
    algorithm = CHECKSUM_ALGORITHMS.get(len(checksum))
    if algorithm is None or any(c not in "0123456789abcdef" for c in checksum):
        raise ValueError(f"checksum {checksum!r} is neither a SHA-1 (40 lowercase hex digits) nor a SHA-256 (64)")
    return algorithm


@dataclass(frozen=True)
class RemoteFile:
    """One file a loader reads: ``name`` is its path inside the data set's folder."""

    name: str
    sha1: str
    url: str


@dataclass(frozen=True)
class Archive:
    """A zip, tar or tar.gz that holds a data set's files, with the archive's ``checksum`` (SHA-1,
    or SHA-256 where that is what the publisher gives).

    ``root`` is the folder inside the archive that becomes the data set's folder: the member
    ``fra-eng/fra.txt`` of ``fra-eng.zip`` is the data set's ``fra.txt`` when ``root="fra-eng"``.
    """

    url: str
    checksum: str
    kind: str
    root: str = ""

    def __post_init__(self):
        if self.kind not in ARCHIVE_KINDS:
            raise ValueError(f"archive kind {self.kind!r} is not one of {ARCHIVE_KINDS}")
        checksum_algorithm(self.checksum)

    @property
    def filename(self) -> str:
        return PurePosixPath(urllib.parse.urlparse(self.url).path).name

    def member(self, name: str) -> str:
        """The path inside the archive of the data set's file ``name``."""
        return f"{self.root}/{name}" if self.root else name


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its files, and how to get them when they are not on disk.

    With an ``archive``, the files are downloaded as that archive and unpacked; with an archive
    and no ``files`` the data set is its whole unpacked folder (only the archive has a published
    checksum). ``packaged`` names one of ``files`` that ships inside the package, in
    ``divekit/data/resources/``.
    """

    name: str
    files: tuple[RemoteFile, ...]
    archive: Archive | None = None
    packaged: str | None = None
    license: str = ""
    description: str = ""

    def __post_init__(self):
        if not self.files and self.archive is None:
            raise ValueError(f"{self.name}: a data set without a list of files needs an archive")
        if self.packaged is not None and self.packaged not in self.filenames:
            raise ValueError(
                f"{self.name}: packaged file {self.packaged!r} is not one of {self.filenames}"
            )

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(remote.name for remote in self.files)

    def file(self, filename: str) -> RemoteFile:
        for remote in self.files:
            if remote.name == filename:
                return remote
        raise ValueError(
            f"data set {self.name!r} has no file {filename!r}; "
            f"its files are {', '.join(self.filenames)}"
        )


# ---------------------------------------------------------------------------------------------
# The registry. Names are the folder names of the data sets; SHA-1s and URLs are d2l's, or the
# authors' files (see shared/data/MANIFEST.md for where each hash was checked).

_D2L_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"
_FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def _files(base_url: str, sha1_by_name: dict[str, str]) -> tuple[RemoteFile, ...]:
    """Files downloaded one by one from ``base_url + name``."""
    return tuple(RemoteFile(name, sha1, base_url + name) for name, sha1 in sha1_by_name.items())


def _archived_spec(
    name: str, archive: Archive, sha1_by_name: dict[str, str], **info: str
) -> DatasetSpec:
    """A data set downloaded as one archive; each file's URL is the archive's."""
    files = tuple(
        RemoteFile(filename, sha1, archive.url) for filename, sha1 in sha1_by_name.items()
    )
    return DatasetSpec(name, files, archive=archive, **info)


_SPECS = (
    DatasetSpec(
        "fashion-mnist",
        _files(
            _FASHION_MNIST_URL,
            {
                "train-images-idx3-ubyte.gz": "95978b76b6897f6ca69a25145d01716efb615989",
                "train-labels-idx1-ubyte.gz": "09814cfef5a041118ceace42f8dae995319d331a",
                "t10k-images-idx3-ubyte.gz": "5edda96c6d8c36ff915115a0e8136d370a021576",
                "t10k-labels-idx1-ubyte.gz": "9caad14e1aff9adac77d3744963212d36af15bee",
            },
        ),
        license="MIT (Zalando SE)",
        description="70,000 28x28 grayscale images of clothes in 10 classes, idx files (D2L §4.2).",
    ),
    DatasetSpec(
        "mnist",
        _files(
            _MNIST_URL,
            {
                "train-images-idx3-ubyte.gz": "6c95f4b05d2bf285e1bfb0e7960c31bd3b3f8a7d",
                "train-labels-idx1-ubyte.gz": "2a80914081dc54586dbdf242f9805a6b8d2a15fc",
                "t10k-images-idx3-ubyte.gz": "c3a25af1f52dad7f726cce8cacb138654b760d48",
                "t10k-labels-idx1-ubyte.gz": "763e7fa3757d93b0cdec073cef058b2004252c17",
            },
        ),
        license="CC BY-SA 3.0 as commonly cited (Y. LeCun, C. Cortes, C. Burges)",
        description="70,000 28x28 grayscale handwritten digits, idx files (torchvision's mirror).",
    ),
    DatasetSpec(
        "timemachine",
        _files(_D2L_URL, {"timemachine.txt": "090b5e7e70c295757f55df93cb0a180b9691891a"}),
        packaged="timemachine.txt",
        license="public domain (H. G. Wells, Project Gutenberg text)",
        description="The Time Machine by H. G. Wells, the book's language-model corpus (D2L §9.2).",
    ),
    _archived_spec(
        "fra-eng",
        Archive(
            _D2L_URL + "fra-eng.zip",
            "94646ad1522d915e7b0f9296181140edcf86a4f5",
            "zip",
            root="fra-eng",
        ),
        {"fra.txt": "c43f99dce27311d3afd4d3e0716848194cfcc103"},
        license="CC BY 2.0 FR (Tatoeba), attribution www.manythings.org/anki and tatoeba.org",
        description="167,130 English-French sentence pairs for machine translation (D2L §10.5).",
    ),
    _archived_spec(
        "wikitext-2",
        Archive(
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
            "3c914d17d80b1459be871a5039ac23e752a53cbe",
            "zip",
            root="wikitext-2",
        ),
        {
            "wiki.train.tokens": "863f29c46ef9d167fff4940ec821195882fe29d1",
            "wiki.valid.tokens": "0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422",
            "wiki.test.tokens": "c7b8ce0aa086fb34dab808c5c49224211eb2b172",
        },
        license="CC BY-SA 3.0 (Wikipedia text; Merity et al. 2016)",
        description="Tokenized Wikipedia articles for BERT pretraining (D2L §15.9).",
    ),
    DatasetSpec(
        "kaggle_house",
        _files(
            _D2L_URL,
            {
                "kaggle_house_pred_train.csv": "585e9cc93e70b39160e7921475f9bcd7d31219ce",
                "kaggle_house_pred_test.csv": "fa19780a7b011d9b009e8bff8e99922a8ee2eb90",
            },
        ),
        license="Ames Housing data (D. De Cock, 2011) via Kaggle, redistributed by d2l; "
        "no explicit open license",
        description="House sale prices with 79 features, Kaggle's competition as in D2L §5.7.",
    ),
    _archived_spec(
        "ptb",
        Archive(
            _D2L_URL + "ptb.zip", "319d85e578af0cdc590547f26231e4e31cdf1e42", "zip", root="ptb"
        ),
        {
            "ptb.train.txt": "f9ffb014fa33bd5730e5029697ad245184f3a678",
            "ptb.valid.txt": "d9f5fed6afa5e1b82cd1e3e5f5040f6852940228",
            "ptb.test.txt": "5c15c548b42d80bce9332b788514e6635fb0226e",
        },
        license="Penn Treebank WSJ text (LDC99T42) as preprocessed by Mikolov; LDC terms",
        description="Penn Treebank sentences for word2vec pretraining (D2L §15.3).",
    ),
    DatasetSpec(
        "cifar-10",
        (),
        archive=Archive(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            # the authors publish an MD5 (c58f30108f718f92721af3b95e74349a); this SHA-256 of the same
            # archive is the one keras.datasets.cifar10 checks
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            "tar.gz",
            root="cifar-10-batches-py",
        ),
        license="no explicit license; cite A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images (2009)",
        description="60,000 32x32 colour images in 10 classes, python pickle batches (D2L §13.1).",
    ),
    DatasetSpec(
        "hotdog",
        (),
        archive=Archive(_D2L_URL + "hotdog.zip", "fba480ffa8aa7e0febbb511d181409f899b9baa5", "zip", root="hotdog"),
        license="photographs collected from the web by the d2l authors; no explicit license",
        description="1,400 hot-dog and 1,400 other photographs in train/ and test/ class folders (D2L §13.2).",
    ),
    DatasetSpec(
        "voc2012",
        (),
        archive=Archive(
            # d2l's copy of http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar
            _D2L_URL + "VOCtrainval_11-May-2012.tar",
            "4e443f8a2eca6b1dac8a6c57641b67dd40621a49",
            "tar",
            root="VOCdevkit/VOC2012",
        ),
        license="Flickr images under their owners' terms; annotations by the PASCAL VOC project",
        description="Pascal VOC2012 trainval: JPEGImages/, SegmentationClass/ palette PNGs, ImageSets/ (D2L §13.9).",
    ),
    DatasetSpec(
        "airfoil",
        _files(_D2L_URL, {"airfoil_self_noise.dat": "76e5be1548fd8222e5074cf0faae75edff8cf93f"}),
        license="CC BY 4.0 (UCI ML Repository, Brooks, Pope, Marcolini)",
        description="NASA airfoil self-noise measurements, the optimization data (D2L §12.5).",
    ),
)

REGISTRY: Mapping[str, DatasetSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})


# ---------------------------------------------------------------------------------------------
# Hashing, with a memory of files already hashed in this process.

# (algorithm, resolved path, size, mtime_ns) -> hex digest. A file rewritten in place changes size
# or mtime, so a stale entry is never looked up again.
_KNOWN_DIGESTS: dict[tuple[str, str, int, int], str] = {}


def sha1sum(path: str | os.PathLike, algorithm: str = "sha1") -> str:
    """The SHA-1 (or another hashlib ``algorithm``) of a file as hex, read in 1 MiB chunks so big
    files need little memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path, algorithm: str) -> tuple[str, str, int, int]:
    stat = path.stat()
    return algorithm, str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _file_digest(path: Path, algorithm: str = "sha1") -> str:
    """``sha1sum(path, algorithm)``, hashed at most once per process while the file stays unchanged."""
    key = _stat_key(path, algorithm)
    if key not in _KNOWN_DIGESTS:
        _KNOWN_DIGESTS[key] = sha1sum(path, algorithm)
    return _KNOWN_DIGESTS[key]


def _matches(path: Path, checksum: str) -> bool:
    return _file_digest(path, checksum_algorithm(checksum)) == checksum


# ---------------------------------------------------------------------------------------------
# Where files live.


def cache_dir() -> Path:
    """The download cache: ``$XDG_CACHE_HOME/divekit``, or ``~/.cache/divekit``."""
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg_cache) / "divekit" if xdg_cache else Path.home() / ".cache" / "divekit"


def _user_copies(
    name: str, filename: str, data_dir: str | os.PathLike | None
) -> Iterator[tuple[Path, str]]:
    """Paths the user controls that may hold the file, best first, with how each was chosen."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        yield folder / name / filename, "the data_dir argument"
        yield folder / filename, "the data_dir argument"
    shared = os.environ.get("DIVEKIT_DATA")
    if shared:
        yield Path(shared).expanduser() / name / filename, "DIVEKIT_DATA"


def _require_sha1(path: Path, remote: RemoteFile, remedy: str) -> Path:
    actual = _file_digest(path)
    if actual != remote.sha1:
        raise ChecksumError(
            f"{path} has SHA-1 {actual}, but {remote.name} should have SHA-1 {remote.sha1}. "
            f"{remedy}"
        )
    return path


def _packaged_copy(remote: RemoteFile) -> Path:
    path = Path(resources.files(__package__) / "resources" / remote.name)
    return _require_sha1(path, remote, "The installed divekit package is damaged: reinstall it.")


# ---------------------------------------------------------------------------------------------
# Downloads.


def _download_once(url: str, dest: Path, checksum: str, progress: bool) -> None:
    algorithm = checksum_algorithm(checksum)
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        size = response.headers.get("Content-Length")
        digest = hashlib.new(algorithm)
        with (
            atomic_open(dest, "wb") as out,
            tqdm(
                total=int(size) if size else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            if digest.hexdigest() != checksum:  # raised inside atomic_open: the temp file is deleted
                name = algorithm.upper().replace("SHA", "SHA-")
                raise ChecksumError(
                    f"the download of {url} has {name} {digest.hexdigest()}, expected {checksum}; "
                    f"it was not kept. The transfer may be corrupt or the file changed upstream: "
                    f"try again, or put a copy with the expected {name} at {dest}."
                )


def _download(url: str, dest: Path, checksum: str, progress: bool) -> None:
    """Download ``url`` to ``dest`` through a temp file renamed only once its checksum matches.

    Transient network errors are retried; the last one is raised. A 4xx answer is not retried.
    """
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        try:
            _download_once(url, dest, checksum, progress)
            break
        except _NETWORK_ERRORS as error:
            permanent = isinstance(error, urllib.error.HTTPError) and error.code < 500
            if permanent or attempt == DOWNLOAD_TRIES:
                raise
            time.sleep(RETRY_BACKOFF_SECONDS * attempt)
    _KNOWN_DIGESTS[_stat_key(dest, checksum_algorithm(checksum))] = checksum


def _download_archive(spec: DatasetSpec, progress: bool) -> None:
    """Get the verified archive into the cache (once) and unpack it into the data set's folder."""
    folder = cache_dir() / spec.name
    archive_path = folder / spec.archive.filename
    if archive_path.is_file() and not _matches(archive_path, spec.archive.checksum):
        archive_path.unlink()
    if not archive_path.is_file():
        _download(spec.archive.url, archive_path, spec.archive.checksum, progress)
    extract_archive(archive_path, folder, spec.archive.kind, root=spec.archive.root)


def _not_found(spec: DatasetSpec, remote: RemoteFile, error: Exception) -> DataNotFoundError:
    folder = cache_dir() / spec.name
    source = (
        remote.url
        if spec.archive is None
        else f"{remote.url} (archive member {spec.archive.member(remote.name)})"
    )
    return DataNotFoundError(
        f"{spec.name}/{remote.name} is not on this machine and could not be downloaded from "
        f"{source}: {type(error).__name__}: {error}. To use a copy you already have, put it in "
        f"{folder} (its SHA-1 must be {remote.sha1}), or set DIVEKIT_DATA to a folder that "
        f"holds {spec.name}/{remote.name}."
    )


# ---------------------------------------------------------------------------------------------
# Resolution.


def _resolve(
    spec: DatasetSpec, remote: RemoteFile, data_dir: str | os.PathLike | None, progress: bool
) -> Path:
    """The path of a verified copy of one file, downloading it if no verified copy exists."""
    for path, origin in _user_copies(spec.name, remote.name, data_dir):
        if path.is_file():
            return _require_sha1(
                path,
                remote,
                f"It was found through {origin} and is not used: replace it with an intact copy, "
                f"or delete it to let divekit look elsewhere or download {remote.url}.",
            )
    cached = cache_dir() / spec.name / remote.name
    if cached.is_file():
        if _file_digest(cached) == remote.sha1:
            return cached
        cached.unlink()
    if spec.packaged == remote.name:
        return _packaged_copy(remote)
    try:
        if spec.archive is None:
            _download(remote.url, cached, remote.sha1, progress)
            return cached
        _download_archive(spec, progress)
    except _NETWORK_ERRORS as error:
        raise _not_found(spec, remote, error) from error
    return _check_unpacked(spec, remote, cached)


def _check_unpacked(spec: DatasetSpec, remote: RemoteFile, path: Path) -> Path:
    """``path`` once the file unpacked there from the archive has its registered SHA-1."""
    if not path.is_file():
        raise DataNotFoundError(
            f"{remote.url} holds no member {spec.archive.member(remote.name)}, so "
            f"{spec.name}/{remote.name} cannot be unpacked from it; the registry entry for "
            f"{spec.name!r} is wrong."
        )
    actual = _file_digest(path)
    if actual != remote.sha1:
        path.unlink()
        raise ChecksumError(
            f"{remote.name} unpacked from {remote.url} has SHA-1 {actual}, expected "
            f"{remote.sha1}; it was deleted. The registry entry for {spec.name!r} disagrees "
            f"with its archive."
        )
    return path


def fetch(
    name: str | DatasetSpec,
    filename: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The path of a verified file of data set ``name``, or of its folder when ``filename`` is None.

    ``name`` is a key of ``REGISTRY``, or a ``DatasetSpec`` for a data set of your own. Each file
    is looked for in ``data_dir``, ``$DIVEKIT_DATA``, the cache and the package, in that order,
    and downloaded into the cache when none of them has it (see the module docstring). With
    ``filename=None`` every file of the data set is resolved and their common folder returned
    (for a data set known only by its archive: its unpacked folder).
    """
    spec = name if isinstance(name, DatasetSpec) else _lookup(name)
    if not spec.files:
        if filename is not None:
            raise ValueError(f"data set {spec.name!r} is fetched as a whole folder; call fetch({spec.name!r})")
        return _resolve_folder(spec, data_dir, progress)
    if filename is not None:
        return _resolve(spec, spec.file(filename), data_dir, progress)
    folders: dict[Path, list[str]] = {}
    for remote in spec.files:
        path = _resolve(spec, remote, data_dir, progress)
        folder = path.parents[len(PurePosixPath(remote.name).parts) - 1]
        folders.setdefault(folder, []).append(remote.name)
    if len(folders) > 1:
        where = "; ".join(f"{folder}: {', '.join(names)}" for folder, names in folders.items())
        raise ValueError(
            f"the files of {spec.name!r} are in different folders ({where}). Put them all in one "
            f"folder, or fetch each file with fetch({spec.name!r}, filename)."
        )
    return next(iter(folders))


def _resolve_folder(spec: DatasetSpec, data_dir: str | os.PathLike | None, progress: bool) -> Path:
    """The unpacked folder of a data set known only by its archive's checksum (see the module docstring)."""
    archive = spec.archive
    for path, origin in _user_copies(spec.name, archive.filename, data_dir):
        folder = path.parent
        if path.is_file():  # the archive itself: verified, then unpacked into the cache
            if not _matches(path, archive.checksum):
                raise ChecksumError(f"{path} (found through {origin}) does not have the checksum {archive.checksum} "
                                    f"of {archive.url}; replace it with an intact copy or delete it")
            return _unpack_once(spec, path)
        if folder.name == spec.name and folder.is_dir() and any(folder.iterdir()):
            return folder  # the user's unpacked copy, taken as it is
    cached = cache_dir() / spec.name
    if (cached / UNPACKED_MARK).is_file() and (cached / UNPACKED_MARK).read_text() == archive.checksum:
        return cached
    try:
        _download_archive(spec, progress)
    except _NETWORK_ERRORS as error:
        raise DataNotFoundError(
            f"{spec.name} is not on this machine and could not be downloaded from {archive.url}: "
            f"{type(error).__name__}: {error}. To use a copy you already have, put the archive "
            f"{archive.filename} (checksum {archive.checksum}) or its unpacked contents (the folder "
            f"{archive.root or 'at the top'} of the archive) in a folder {spec.name}/ under DIVEKIT_DATA."
        ) from error
    (cached / UNPACKED_MARK).write_text(archive.checksum)
    return cached


def _unpack_once(spec: DatasetSpec, archive_path: Path) -> Path:
    """Unpack the verified ``archive_path`` into the cache unless that was done already."""
    cached = cache_dir() / spec.name
    mark = cached / UNPACKED_MARK
    if not (mark.is_file() and mark.read_text() == spec.archive.checksum):
        extract_archive(archive_path, cached, spec.archive.kind, root=spec.archive.root)
        mark.write_text(spec.archive.checksum)
    return cached


def _lookup(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown data set {name!r}; known data sets are {', '.join(sorted(REGISTRY))}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Safe extraction.


def extract_archive(
    archive_path: str | os.PathLike, target_dir: str | os.PathLike, kind: str, *, root: str = ""
) -> Path:
    """Unpack a zip, tar or tar.gz into ``target_dir`` and return it; only members under ``root/`` are
    kept, with that prefix removed.

    Every member is checked before anything is written: an absolute path, a ``..`` that leaves the
    folder, a link pointing outside it, or a device file raises ``UnsafeArchiveError`` and nothing
    is extracted. The archive is unpacked into a temporary folder beside ``target_dir`` and only
    then moved into place, so an archive that fails to unpack leaves ``target_dir`` as it was.
    """
    if kind not in ARCHIVE_KINDS:
        raise ValueError(f"archive kind {kind!r} is not one of {ARCHIVE_KINDS}")
    archive_path, target_dir = Path(archive_path), Path(target_dir).absolute()
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target_dir.name}.", suffix=".unpack", dir=target_dir.parent)
    )
    try:
        if kind == "zip":
            _extract_zip(archive_path, staging)
        else:
            _extract_tar(archive_path, staging, TAR_MODES[kind])
        source = staging / root
        if not source.is_dir():
            raise ValueError(f"{archive_path} has no folder {root!r} to unpack")
        _move_into(source, target_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target_dir


def _unsafe(archive_path: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive_path}: member {member!r} {why}; nothing was extracted. The archive is "
        f"damaged or malicious: delete it and get it from a source you trust."
    )


def _extract_zip(archive_path: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        for member in archive.namelist():  # check all before writing any
            landing = os.path.normpath(os.path.join(staging, member))
            if os.path.isabs(member) or os.path.commonpath([staging, landing]) != str(staging):
                raise _unsafe(archive_path, member, "would be written outside the target folder")
        archive.extractall(staging)


def _extract_tar(archive_path: Path, staging: Path, mode: str) -> None:
    with tarfile.open(archive_path, mode) as archive:
        try:
            for member in archive.getmembers():  # check all before writing any
                tarfile.data_filter(member, str(staging))
            archive.extractall(staging, filter="data")  # re-checks links through extracted links
        except tarfile.FilterError as error:
            raise _unsafe(archive_path, error.tarinfo.name, f"is refused ({error})") from error


def _move_into(source: Path, target: Path) -> None:
    """Move the contents of ``source`` into ``target``, merging folders and replacing files."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and destination.is_dir():
            _move_into(entry, destination)
        else:
            os.replace(entry, destination)
