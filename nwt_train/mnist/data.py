"""MNIST in the IDX format (LeCun and Cortes): read the four gzipped files and check them.

Every file is checked structurally (magic number, 28x28 images, a payload as long as the header says,
labels in 0..9, as many labels as images). With `verify_md5` the decompressed bytes must also match the
published MD5s, which only the real, complete MNIST does (a test folder with a few hundred images
turns the check off). Problems raise `MnistDataError`, a one-line message that says what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nwt_train.errors import DataError

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
SIDE = 28

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# MD5 of the decompressed files (the .gz themselves may be recompressed). /work/shared/mnist/README.md
# gives 27ae3e4e09519cddbe91d9eb4ad3a0f1 for the test labels, but its t10k-labels .gz is byte-identical to
# the original archive (published .gz MD5 ec29112dd5afa0611ce80d1b7f02629c) and decompresses to the value
# below, with the known per-digit counts (980, 1135, ...): the README's digest is the wrong one.
MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}


class MnistDataError(DataError):
    """The MNIST folder is missing files or holds files that are not (the right) MNIST IDX data."""


@dataclass(frozen=True)
class Mnist:
    """uint8 images (n, 28, 28) and int64 labels (n,) of both splits."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _read_bytes(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise MnistDataError(
            f"{path} is not a readable gzip file ({err}); replace it with the original MNIST file"
        ) from None


def _parse(path: Path, raw: bytes, *, images: bool) -> np.ndarray:
    magic_wanted, header = (IMAGE_MAGIC, 16) if images else (LABEL_MAGIC, 8)
    fix = "replace it with the original MNIST file"
    if len(raw) < header:
        raise MnistDataError(f"{path} is too short for an IDX header ({len(raw)} bytes); {fix}")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != magic_wanted:
        raise MnistDataError(f"{path} has IDX magic number {magic}, expected {magic_wanted}; {fix}")
    shape: tuple[int, ...] = (count,)
    if images:
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (SIDE, SIDE):
            raise MnistDataError(f"{path} holds {rows}x{cols} images, expected {SIDE}x{SIDE}; {fix}")
        shape = (count, rows, cols)
    payload = len(raw) - header
    expected = int(np.prod(shape))
    if payload != expected:
        raise MnistDataError(
            f"{path} header promises {count} items ({expected} bytes) but holds {payload} bytes; {fix}"
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    if not images:
        if count and int(array.max()) > 9:
            raise MnistDataError(f"{path} holds label {int(array.max())}, MNIST labels are 0..9; {fix}")
        return array.astype(np.int64)
    return array.copy()


def load_mnist(folder: str | Path, *, verify_md5: bool = True) -> Mnist:
    """Read and check the four files of `folder`; raise `MnistDataError` with what to do if unusable."""
    folder = Path(folder)
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise MnistDataError(
            f"MNIST folder {folder} lacks {', '.join(missing)}; put the four gzipped MNIST IDX files "
            "there or pass --data with the folder that holds them"
        )
    arrays: dict[str, np.ndarray] = {}
    for key, name in FILES.items():
        path = folder / name
        raw = _read_bytes(path)
        if verify_md5:
            digest = hashlib.md5(raw).hexdigest()
            if digest != MD5[key]:
                raise MnistDataError(
                    f"{path} decompresses to MD5 {digest}, not MNIST's {MD5[key]}; replace it with the "
                    "original file (or pass --no-verify-md5 for a deliberately different IDX folder)"
                )
        arrays[key] = _parse(path, raw, images=key.endswith("images"))
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise MnistDataError(
                f"{folder}: {split} has {n_images} images but {n_labels} labels; the files do not belong "
                "together, replace them with the original MNIST files"
            )
        if n_images == 0:
            raise MnistDataError(f"{folder}: the {split} files hold no images; use the MNIST files")
    return Mnist(**arrays)


def to_tensor_range(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [-1, 1], the range of the decoder's tanh."""
    return (images.astype(np.float32) / 127.5 - 1.0)[:, None]


def write_idx(folder: str | Path, images: np.ndarray, labels: np.ndarray, *, split: str) -> None:
    """Write uint8 images (n, 28, 28) and labels (n,) as the gzipped IDX files of `split` (train or t10k).

    For building small IDX folders, e.g. in tests; the layout is the one `load_mnist` reads.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    images = np.ascontiguousarray(images, dtype=np.uint8)
    n, rows, cols = images.shape
    header = struct.pack(">IIII", IMAGE_MAGIC, n, rows, cols)
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", LABEL_MAGIC, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes())
