"""The data hub: which files each data set needs, where to find them, and how to get them safely.

The book downloads its data sets from a handful of URLs and checks each one against a SHA-1.
This module does the same, but it looks on disk before it goes to the network, it never uses a
file whose SHA-1 is wrong, and it never leaves a half-written file behind. ``fetch`` looks for
each file of a data set in this order:

1. ``data_dir/<name>/<file>`` or ``data_dir/<file>``, for an explicit ``data_dir`` argument;
2. ``$DIVEKIT_DATA/<name>/<file>``, a shared folder of data sets (one sub-folder per data set);
3. ``cache_dir()/<name>/<file>``, where downloads go;
4. a copy shipped inside the package (``divekit/data/resources/``), where the data set has one;
5. for a data set that comes in an archive, the archive itself in 1 or 2 (``<name>/<archive file>``),
   checked and unpacked into the cache;
6. the canonical URL, downloaded (and, for an archive, safely unpacked) into the cache.

A copy found in 1 or 2 with the wrong SHA-1 is an error, because only the user can say which copy
is right. A wrong copy in the cache is deleted and downloaded again.

Files inside an archive whose own SHA-1s are not known (the banana detection set: only the zip's
SHA-1 is published) have ``sha1=None`` and are vouched for by the archive alone. Such a file is
never taken from a folder as it stands, since nothing could check it: ``fetch`` looks for the
*archive* in 1 and 2 (``<name>/<archive file>`` or ``<archive file>``), checks the archive's
checksum, and unpacks it into ``cache_dir()/<name>``, or downloads the archive there (6). Each
unpacking leaves a marker file ``.<archive file>.unpacked`` holding the archive's checksum, and the
cache folder's members are used while that marker names the registered archive; a member that
has gone missing is unpacked again.

Some publishers give a checksum of the archive only and a data set too large to list file by
file (CIFAR-10, VOC2012, hotdog), and some give a SHA-256 rather than a SHA-1 (CIFAR-10: Keras
checks the SHA-256 of the authors' archive). Such a data set lists no files: ``fetch(name)``
returns its unpacked folder, taken as it is from 1 or 2 (the archive itself, dropped there, is
verified and unpacked into the cache), or else unpacked in the cache from the verified archive.
A checksum's length says its algorithm: 40 hex digits SHA-1, 64 SHA-256. A download or unpacking
killed midway leaves a temporary file or folder, removed by the next one a day later.
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
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from glob import escape as glob_escape
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
ABANDONED_AFTER_SECONDS = 24 * 3600  # a temporary download or unpacking untouched this long was killed: removed
REQUEST_TIMEOUT_SECONDS = 30.0  # per connect and per read, not for the whole download
TAR_MODES = {"tar": "r:", "tar.gz": "r:gz", "tgz": "r:gz"}  # archive kind -> tarfile's mode
ARCHIVE_KINDS = ("zip", *TAR_MODES)
CHECKSUM_ALGORITHMS = {40: "sha1", 64: "sha256"}  # hex digits -> hashlib's name

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
    """One file a loader reads: ``name`` is its path inside the data set's folder. ``sha1`` None:
    only the data set's archive has a known SHA-1, which vouches for this member (module docstring)."""

    name: str
    sha1: str | None
    url: str

    def __post_init__(self):
        if self.sha1 is not None and (len(self.sha1) != 40 or self.sha1.strip("0123456789abcdef")):
            raise ValueError(f"the sha1 of {self.name} must be a SHA-1 (40 lowercase hex digits), got {self.sha1!r}; "
                             "a file known by another checksum is vouched for by its archive's (sha1=None)")


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
        unchecked = [remote.name for remote in self.files if remote.sha1 is None]
        if unchecked and (self.archive is None or self.packaged in unchecked):
            raise ValueError(
                f"{self.name}: {', '.join(unchecked)} have no SHA-1 of their own, so they must come "
                f"from the data set's archive, whose SHA-1 vouches for them"
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
    name: str, archive: Archive, sha1_by_name: dict[str, str | None], **info: str
) -> DatasetSpec:
    """A data set downloaded as one archive; each file's URL is the archive's (a SHA-1 of None:
    the archive's vouches for the file)."""
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
        description="70,000 28x28 grayscale images of clothes in 10 classes, idx files (D2L §3.5).",
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
        description="70,000 28x28 grayscale handwritten digits, idx files (torchvision's mirror; D2L §3.5).",
    ),
    DatasetSpec(
        "timemachine",
        _files(_D2L_URL, {"timemachine.txt": "090b5e7e70c295757f55df93cb0a180b9691891a"}),
        packaged="timemachine.txt",
        license="public domain (H. G. Wells, Project Gutenberg text)",
        description="The Time Machine by H. G. Wells, the book's language-model corpus (D2L §8.2).",
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
        description="167,130 English-French sentence pairs for machine translation (D2L §9.5).",
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
        description="Tokenized Wikipedia articles for BERT pretraining (D2L §14.9).",
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
        description="House sale prices with 79 features, Kaggle's competition as in D2L §4.10.",
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
        description="Penn Treebank sentences for word2vec pretraining (D2L §14.3).",
    ),
    _archived_spec(
        "banana-detection",
        Archive(
            _D2L_URL + "banana-detection.zip",
            "5de26c8fce5ccdea9f91267273464dc968d20d72",
            "zip",
            root="banana-detection",
        ),
        # per-file SHA-1s are not published; the images/ folders beside them come from the same archive
        {"bananas_train/label.csv": None, "bananas_val/label.csv": None},
        license="made by the d2l authors for the book (D2L §13.6); no explicit license",
        description="1,000 training and 100 validation 256x256 images with one banana each, label.csv "
        "with img_name,label,xmin,ymin,xmax,ymax in pixels (D2L §13.6).",
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
        description="NASA airfoil self-noise measurements, the optimization data (D2L §11.5).",
    ),
    # Only the archives' SHA-1s are published for these (d2l's DATA_HUB): their members are vouched for by them.
    _archived_spec(
        "snli",
        Archive("https://nlp.stanford.edu/projects/snli/snli_1.0.zip",
                "9fcde07509c7e87ec61c640c1b2753d9041758e4", "zip", root="snli_1.0"),
        {"snli_1.0_train.txt": None, "snli_1.0_dev.txt": None, "snli_1.0_test.txt": None},
        license="CC BY-SA 4.0 (Bowman et al. 2015, Stanford NLP)",
        description="Stanford Natural Language Inference: 570k premise-hypothesis pairs labeled entailment, "
        "contradiction or neutral, tab-separated with binary parses (D2L §15.4).",
    ),
    _archived_spec(
        "aclImdb",
        Archive("http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                "01ada507287d82875905620988597833ad4e0903", "tar.gz", root="aclImdb"),
        # the reviews are 50,000 files in {train,test}/{pos,neg}/ beside the README, from the same archive
        {"README": None},
        license="Large Movie Review Dataset (Maas et al. 2011); no explicit license, for research",
        description="50,000 IMDb movie reviews, half positive, one text file each (D2L §15.1).",
    ),
    _archived_spec(
        "d2l-bert.small",
        Archive(_D2L_URL + "bert.small.torch.zip", "c72329e68a732bef0452e4b96a1c341c8910f81f", "zip",
                root="bert.small.torch"),
        {"pretrained.params": None, "vocab.json": None},
        license="made by the d2l authors for the book; no explicit license",
        description="The book's pretrained small BERT (2 blocks, width 256, 4 heads): the state dict of d2l's "
        "BERTModel and its vocabulary as JSON (D2L §15.7).",
    ),
    _archived_spec(
        "d2l-bert.base",
        Archive(_D2L_URL + "bert.base.torch.zip", "225d66f04cae318b841a13d32af3acc165f253ac", "zip",
                root="bert.base.torch"),
        {"pretrained.params": None, "vocab.json": None},
        license="made by the d2l authors for the book; no explicit license",
        description="The book's pretrained BERT-base-sized model (12 blocks, width 768, 12 heads): d2l BERTModel's "
        "state dict and its vocabulary as JSON (D2L §15.7).",
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


def file_sha1(path: Path) -> str:
    """``sha1sum(path)``, hashed at most once per process while the file stays unchanged."""
    return _file_digest(path)


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
    actual = file_sha1(path)
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
    _remove_abandoned(dest.parent, f".{dest.name[:32]}.", ".tmp")  # atomic_open's names for dest
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


def _remove_abandoned(folder: Path, prefix: str, suffix: str) -> None:
    """Remove the temporary files or folders ``prefix*suffix`` in ``folder`` that a killed download or
    unpacking left (untouched for ``ABANDONED_AFTER_SECONDS``: another process's are still growing)."""
    if not folder.is_dir():
        return
    for path in folder.glob(f"{glob_escape(prefix)}*{suffix}"):
        try:
            if time.time() - path.lstat().st_mtime <= ABANDONED_AFTER_SECONDS:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:  # gone already, or not ours to remove: leave it
            pass


def _download_archive(spec: DatasetSpec, progress: bool) -> None:
    """Get the verified archive into the cache (once) and unpack it into the data set's folder."""
    folder = cache_dir() / spec.name
    archive_path = folder / spec.archive.filename
    if archive_path.is_file() and not _matches(archive_path, spec.archive.checksum):
        archive_path.unlink()
    if not archive_path.is_file():
        _download(spec.archive.url, archive_path, spec.archive.checksum, progress)
    _unpack(spec, archive_path)


def _unpack_marker(spec: DatasetSpec) -> Path:
    """The file that records which archive (by checksum) the cache folder of ``spec`` was unpacked from."""
    return cache_dir() / spec.name / f".{spec.archive.filename}.unpacked"


def _unpacked(spec: DatasetSpec) -> bool:
    """Whether the cache folder of ``spec`` holds an unpacking of its registered archive."""
    marker = _unpack_marker(spec)
    return marker.is_file() and marker.read_text().strip() == spec.archive.checksum


def _unpack(spec: DatasetSpec, archive_path: Path) -> None:
    """Unpack a verified archive into the data set's cache folder and mark the folder as its copy."""
    extract_archive(archive_path, cache_dir() / spec.name, spec.archive.kind, root=spec.archive.root)
    with atomic_open(_unpack_marker(spec), "w") as marker:
        marker.write(spec.archive.checksum + "\n")


def _unpack_users_archive(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> bool:
    """Unpack the user's copy of the data set's archive (``data_dir`` or DIVEKIT_DATA) into the cache, once
    verified; False when there is none. A copy with another checksum is an error, not skipped."""
    archive = spec.archive
    for candidate, origin in _user_copies(spec.name, archive.filename, data_dir):
        if candidate.is_file():
            if not _matches(candidate, archive.checksum):
                raise ChecksumError(
                    f"{candidate} does not have the checksum {archive.checksum} of {archive.url}. It was "
                    f"found through {origin} and is not used: replace it with an intact copy, or delete it "
                    f"to let divekit download {archive.url}."
                )
            _unpack(spec, candidate)
            return True
    return False


def _archive_member(
    spec: DatasetSpec, remote: RemoteFile, data_dir: str | os.PathLike | None, progress: bool
) -> Path:
    """A file without a SHA-1 of its own: a member of the verified archive, unpacked into the cache
    (from the user's copy of the archive, the cached one, or a download), never a loose copy."""
    path = cache_dir() / spec.name / remote.name
    if path.is_file() and _unpacked(spec):
        return path
    archive = spec.archive
    if not _unpack_users_archive(spec, data_dir):
        try:
            _download_archive(spec, progress)
        except _NETWORK_ERRORS as error:
            raise _not_found(spec, remote, error) from error
    if not path.is_file():
        raise DataNotFoundError(
            f"{archive.url} holds no member {archive.member(remote.name)}; the registry entry "
            f"for {spec.name!r} is wrong."
        )
    return path


def _not_found(spec: DatasetSpec, remote: RemoteFile, error: Exception) -> DataNotFoundError:
    folder = cache_dir() / spec.name
    if remote.sha1 is None:
        return DataNotFoundError(
            f"{spec.name}/{remote.name} is not on this machine and {spec.archive.url} could not be "
            f"downloaded: {type(error).__name__}: {error}. Only the archive's checksum is known, so an "
            f"unpacked copy cannot be checked: put {spec.archive.filename} "
            f"({checksum_algorithm(spec.archive.checksum).upper().replace('SHA', 'SHA-')} {spec.archive.checksum}) "
            f"in {folder}, or in a folder {spec.name} under DIVEKIT_DATA."
        )
    source = (
        remote.url
        if spec.archive is None
        else f"{remote.url} (archive member {spec.archive.member(remote.name)})"
    )
    return DataNotFoundError(
        f"{spec.name}/{remote.name} is not on this machine and could not be downloaded from "
        f"{source}: {type(error).__name__}: {error}. To use a copy you already have, put it in "
        f"{folder} (its SHA-1 must be {remote.sha1}), or set DIVEKIT_DATA to a folder that "
        f"holds {spec.name}/{remote.name}"
        + ("." if spec.archive is None else f" or {spec.name}/{spec.archive.filename}.")
    )


# ---------------------------------------------------------------------------------------------
# Resolution.


def _resolve(
    spec: DatasetSpec, remote: RemoteFile, data_dir: str | os.PathLike | None, progress: bool
) -> Path:
    """The path of a verified copy of one file, downloading it if no verified copy exists."""
    if remote.sha1 is None:
        return _archive_member(spec, remote, data_dir, progress)
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
        if file_sha1(cached) == remote.sha1:
            return cached
        cached.unlink()
    if spec.packaged == remote.name:
        return _packaged_copy(remote)
    if spec.archive is not None and _unpack_users_archive(spec, data_dir):  # the archive itself, put by the user
        return _check_unpacked(spec, remote, cached)
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
    actual = file_sha1(path)
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
    if _unpacked(spec):
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
    return cached


def _unpack_once(spec: DatasetSpec, archive_path: Path) -> Path:
    """Unpack the verified ``archive_path`` into the cache unless that was done already."""
    if not _unpacked(spec):
        _unpack(spec, archive_path)
    return cache_dir() / spec.name


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
    archive_path, target_dir = Path(archive_path), Path(target_dir).resolve()  # no ".." left to compare
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target_dir.parent, f".{target_dir.name}.", ".unpack")
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target_dir.name}.", suffix=".unpack", dir=target_dir.parent)
    )
    try:
        try:
            if kind == "zip":
                _extract_zip(archive_path, staging)
            else:
                _extract_tar(archive_path, staging, TAR_MODES[kind])
        except (zipfile.BadZipFile, tarfile.ReadError, EOFError, zlib.error) as error:
            raise ValueError(f"{archive_path} is truncated or corrupt ({type(error).__name__}: {error}); nothing was "
                             "extracted: delete it and download it again") from error
        source = staging / root
        if not source.is_dir():
            raise ValueError(f"{archive_path} has no folder {root!r} to unpack")
        _check_links_stay_inside(archive_path, source)
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
                if os.path.isabs(member.name):  # the data filter would strip the "/": refuse it instead
                    raise _unsafe(archive_path, member.name, "has an absolute path")
                tarfile.data_filter(member, str(staging))
            archive.extractall(staging, filter="data")  # re-checks links through extracted links
        except tarfile.FilterError as error:
            raise _unsafe(archive_path, error.tarinfo.name, f"is refused ({error})") from error


def _check_links_stay_inside(archive_path: Path, source: Path) -> None:
    """Refuse a symbolic link under ``source`` (the part of the archive that is kept) that leads out of
    it: the tar filter checks links against the whole unpacked archive, and ``root/`` is only part of it."""
    inside = os.path.realpath(source)
    for folder, names, files in os.walk(source):
        for name in names + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.path.commonpath([inside, os.path.realpath(path)]) != inside:
                raise _unsafe(archive_path, os.path.relpath(path, source), "is a link that leads out of the folder")


def _move_into(source: Path, target: Path) -> None:
    """Move the contents of ``source`` into ``target``, merging folders and replacing files (and links:
    a folder is never merged through a link into wherever the link leads)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and destination.is_dir() and not destination.is_symlink():
            _move_into(entry, destination)
        else:
            if destination.is_symlink():
                destination.unlink()  # replaced, never written through
            os.replace(entry, destination)
