"""Fetching a dataset's public release: the Keras dataset cache, downloads with a timeout,
checksums the publishers give, and safe tarball extraction.

Only this module opens network connections; the readers in mlpreprocess.py read files.
"""
import dataclasses
import errno
import hashlib
import http.client
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib

from tqdm import tqdm


class DatasetError(ValueError):
    """A dataset file is missing or not what it should be; the message says which and why."""


DOWNLOAD_TIMEOUT_S = 5.0  # to connect, and at most between two reads: without a network a run
                          # falls back at once (no name resolution) or after this, never hangs
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset's public release, and the checksum its publisher gives for it."""
    name: str          # path inside the Keras dataset cache, as Keras names it
    url: str
    algorithm: str     # "sha256" or "md5": whichever the publisher gives
    digest: str
    published_by: str
    aliases: tuple = ()  # other names the same file may have in a Keras cache


REMOTE_FILES = {
    "mnist": (RemoteFile("mnist.npz", KERAS_ORIGIN + "mnist.npz", "sha256",
                         "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
                         "keras.datasets.mnist"),),
    "fashion_mnist": tuple(
        RemoteFile(f"fashion-mnist/{name}", KERAS_ORIGIN + name, "md5", digest, "the Fashion-MNIST README")
        for name, digest in (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                             ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                             ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                             ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"))),
    "cifar10": (RemoteFile("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           "sha256", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                           "keras.datasets.cifar10", aliases=("cifar-10-batches-py-target_archive",)),),
}
CIFAR_EXTRACTED = "cifar-10-batches-py"  # the folder the python tarball holds
ALGORITHM_NAMES = {"sha256": "SHA-256", "md5": "MD5"}


class UnavailableError(DatasetError):
    """A dataset's release files could not be had (--offline, no network, a failed or damaged
    download); the message is the one-line reason."""


def keras_cache_dir():
    """Where Keras keeps downloaded datasets: $KERAS_HOME/datasets, default ~/.keras/datasets."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def file_digest(path, algorithm="sha256"):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path, remote):
    """Raise DatasetError naming `path` unless the file has the published checksum."""
    try:
        actual = file_digest(path, remote.algorithm)
    except OSError as error:
        raise DatasetError(f"{path}: cannot read: {error.strerror}") from None
    if actual != remote.digest:
        raise DatasetError(f"{path}: {ALGORITHM_NAMES[remote.algorithm]} {actual} is not the {remote.digest} "
                           f"published by {remote.published_by}, so the file is damaged or not the release; "
                           f"delete it and it is downloaded again")


def _download_failure(error, url, partial, timeout):
    """One line for each way a download fails."""
    host = urllib.parse.urlsplit(url).hostname
    if isinstance(error, urllib.error.HTTPError):
        return f"{url}: HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):  # before any byte came: the reason is inside
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return f"{host}: no answer within {timeout:g} s"
        if isinstance(reason, socket.gaierror):
            return f"{host}: cannot resolve the name (no network?)"
        return f"{host}: cannot connect: {getattr(reason, 'strerror', None) or reason}"
    if isinstance(error, TimeoutError):
        return f"{url}: the download stalled (no data for {timeout:g} s)"
    if isinstance(error, (ConnectionError, http.client.HTTPException)):
        return f"{url}: the connection broke off: {error!r}"
    if error.errno == errno.ENOSPC:
        return f"cannot write {partial}: no space left on the device"
    return f"cannot write {partial}: {error.strerror or error}"


def download(remote, cache_dir, timeout=None, log=print):
    """Fetch `remote` into `cache_dir` and return its path. The bytes go to a temporary name in
    the same folder, renamed only once the checksum matched, so an interrupted or damaged
    download never leaves a file that looks complete. Raises UnavailableError with the reason."""
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    target = os.path.join(cache_dir, remote.name)
    folder = os.path.dirname(target)
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".part")
    except OSError as error:
        raise UnavailableError(f"cannot write to the dataset cache {folder}: {error.strerror}") from None
    log(f"downloading {remote.url} to {target}")
    try:
        with os.fdopen(descriptor, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as response:
            expected, received, digest = response.length, 0, hashlib.new(remote.algorithm)
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                      desc=os.path.basename(target), leave=False) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and received != expected:
            raise UnavailableError(f"{remote.url}: the download ended after {received} of {expected} bytes")
        if digest.hexdigest() != remote.digest:
            raise UnavailableError(f"{remote.url}: {ALGORITHM_NAMES[remote.algorithm]} of the download is "
                              f"{digest.hexdigest()}, not the {remote.digest} published by "
                              f"{remote.published_by}; deleted it")
        os.replace(partial, target)
        return target
    except (OSError, http.client.HTTPException) as error:  # URLError and TimeoutError are OSErrors
        raise UnavailableError(_download_failure(error, remote.url, partial, timeout)) from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def cached_or_downloaded(name, offline=False, log=print, cache_dir=None):
    """Paths of a dataset's release files in the Keras cache, each checked against its published
    checksum every time; missing ones are downloaded first unless `offline`.

    Raises DatasetError naming a cached file that fails its check (it is left for the user to
    look at), and UnavailableError with the reason when a file cannot be had.
    """
    cache_dir = cache_dir or keras_cache_dir()
    paths = []
    for remote in REMOTE_FILES[name]:
        candidates = [os.path.join(cache_dir, n) for n in (remote.name, *remote.aliases)]
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is not None:
            verify(path, remote)
        elif offline:
            raise UnavailableError(f"--offline, and {candidates[0]} is not there")
        else:
            path = download(remote, cache_dir, log=log)
        paths.append(path)
    return paths


def _strict_data_filter(member, destination):
    """tarfile's "data" filter (no member or link may leave the destination, no devices), and
    also refuse absolute names, which that filter would only strip."""
    if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, destination)


def extract_tarball(tarball, member_dir):
    """The folder `member_dir` of `tarball`, extracted beside it unless it already is. Unsafe
    members are refused and nothing is written outside a temporary folder until all passed."""
    folder = os.path.dirname(os.path.abspath(tarball))
    final = os.path.join(folder, member_dir)
    if os.path.isdir(final):
        return final
    staging = tempfile.mkdtemp(dir=folder, prefix=".extract-")
    try:
        with tarfile.open(tarball, "r:*") as archive:
            archive.extractall(staging, filter=_strict_data_filter)
        if not os.path.isdir(os.path.join(staging, member_dir)):
            raise DatasetError(f"{tarball}: holds no {member_dir}/ folder")
        os.replace(os.path.join(staging, member_dir), final)
    except tarfile.FilterError as error:
        raise DatasetError(f"{tarball}: refused to extract: {error}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{tarball}: cannot extract: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
