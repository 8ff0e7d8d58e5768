"""Rebuild data.npz, the Fashion-MNIST subset this task ships, from Debian's dataset-fashion-mnist package.

    apt-get install dataset-fashion-mnist       # the four IDX files, in /usr/share/datasets/fashion-mnist
    python3 make_data.py                        # writes data.npz next to this script
    python3 make_data.py --check                # rebuilds in memory, exits 1 unless it equals data.npz

The subset is chosen without any random generator (whose streams may change between NumPy versions):
in file order, the first TRAIN_PER_CLASS images of each class of the training file make the training
split, and of the test file (t10k) the first TEST_PER_CLASS images of each class make the test split and
the next HELD_OUT_PER_CLASS of each class the held-out split. The zip archive is written with fixed
timestamps, so the same source files always give the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
OUTPUT = Path(__file__).resolve().parent / "data.npz"
TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100
HELD_OUT_PER_CLASS = 100
CLASSES = 10
# The earliest date a zip entry can carry: no build time leaks into the bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """One gzip'd IDX file (the MNIST format): a big-endian header, then uint8 values."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except OSError as exc:
        raise SystemExit(f"make_data: cannot read {path}: {exc} (apt-get install dataset-fashion-mnist)") from None
    header = 4 * (1 + len(shape))
    dims = np.frombuffer(raw[:header], dtype=">u4")
    count, *inner = (int(d) for d in dims[1:])
    if int(dims[0]) != magic or tuple(inner) != shape[1:] or len(raw) != header + count * int(np.prod(inner)):
        raise SystemExit(f"make_data: {path} is not an IDX file of the expected kind")
    return np.frombuffer(raw[header:], dtype=np.uint8).reshape(count, *inner)


def first_per_class(labels: np.ndarray, start: int, count: int) -> np.ndarray:
    """Indices, in file order, of the images ranked start..start+count-1 within their own class."""
    picked = []
    for label in range(CLASSES):
        members = np.flatnonzero(labels == label)
        if len(members) < start + count:
            raise SystemExit(f"make_data: class {label} has only {len(members)} images")
        picked.append(members[start : start + count])
    return np.sort(np.concatenate(picked))


def build(source: Path) -> dict[str, np.ndarray]:
    """The task's splits, as uint8 images (N, 28, 28) and uint8 labels (N,)."""
    train_x = read_idx(source / "train-images-idx3-ubyte.gz", 2051, (0, 28, 28))
    train_y = read_idx(source / "train-labels-idx1-ubyte.gz", 2049, (0,))
    t10k_x = read_idx(source / "t10k-images-idx3-ubyte.gz", 2051, (0, 28, 28))
    t10k_y = read_idx(source / "t10k-labels-idx1-ubyte.gz", 2049, (0,))
    train = first_per_class(train_y, 0, TRAIN_PER_CLASS)
    test = first_per_class(t10k_y, 0, TEST_PER_CLASS)
    held_out = first_per_class(t10k_y, TEST_PER_CLASS, HELD_OUT_PER_CLASS)
    return {
        "train_x": train_x[train], "train_y": train_y[train],
        "test_x": t10k_x[test], "test_y": t10k_y[test],
        "held_out_x": t10k_x[held_out], "held_out_y": t10k_y[held_out],
    }


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive (what numpy.load reads) with fixed entry order and timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of the four Fashion-MNIST .gz files")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="where to write the archive")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args()
    arrays = build(args.source)
    data = encode(arrays)
    digest = hashlib.sha256(data).hexdigest()
    sizes = ", ".join(f"{name[:-2]} {len(arrays[name])}" for name in arrays if name.endswith("_y"))
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out.name}: {'identical' if same else 'DIFFERS'} (rebuilt sha256 {digest})")
        sys.exit(0 if same else 1)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, sha256 {digest}): {sizes}")


if __name__ == "__main__":
    main()
