"""LightningDataModules for classification, held in memory as tensors.

Every module exposes ``input_shape`` ((C, H, W) for images, (F,) for features) and ``num_classes``
right after ``__init__`` (a CLI links them into the model), seeded train/val/test splits, inputs
flattened channel-major to ``(N, prod(input_shape))`` float32, and loaders that yield whole batches
by indexing the cached tensors (no per-sample Python loop). ``tensors(split)`` hands estimators the
cached split without a DataLoader.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import warnings
from pathlib import Path
from typing import Iterator

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

SPLITS = ("train", "val", "test")


class _Batches(Dataset):
    """A dataset indexed by a whole list of indices at once."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(idx)
        return self.x[idx], self.y[idx]


class EpochBatches(Sampler):
    """Shuffled batches of indices whose order is a function of the seed and the epoch alone, so a
    fit resumed at an epoch draws what the uninterrupted fit drew there. Lightning sets the epoch
    (``set_epoch``); a plain loop over the loader gets the next epoch at each pass. The orders are
    those a ``RandomSampler`` seeded once gives over whole epochs (it draws two permutations per
    epoch and uses the first)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(2 * self.epoch):
            torch.randperm(self.n, generator=gen)
        order = torch.randperm(self.n, generator=gen).tolist()
        self.epoch += 1
        for i in range(0, self.n, self.batch_size):
            yield order[i:i + self.batch_size]


def split_indices(n: int, seed: int, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """A seeded permutation of ``range(n)`` cut into train / val / test."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction}: expected fractions "
                         "in [0, 1) that leave a train split")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    return {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}


class TensorDataModule(pl.LightningDataModule):
    """Base: subclasses set ``input_shape`` and ``num_classes`` in ``__init__`` and implement
    ``load() -> {split: (x, y)}``; this class caches, batches and hands out the splits.

    An empty validation split (``val_fraction=0``) validates on the test split.
    """

    input_shape: tuple[int, ...]
    num_classes: int

    def __init__(self, seed: int = 0, batch_size: int = 128, train_size: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size}: must be positive")
        if train_size is not None and train_size < 1:
            raise ValueError(f"train_size {train_size}: must be positive (or None for the whole train split)")
        self.seed, self.batch_size, self.train_size = seed, batch_size, train_size
        self._splits: dict[str, tuple[Tensor, Tensor]] | None = None

    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            splits = self.load()
            if self.train_size is not None:
                x, y = splits["train"]
                splits["train"] = (x[: self.train_size], y[: self.train_size])
            n_in = math.prod(self.input_shape)
            self._splits = {k: (x.float().reshape(len(x), n_in).contiguous(), y.long()) for k, (x, y) in splits.items()}

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """The cached ``(x (N, prod(input_shape)), y (N,))`` of ``train``, ``val`` or ``test``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        self.setup()
        if split == "val" and not len(self._splits["val"][1]):
            split = "test"
        return self._splits[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = _Batches(*self.tensors(split))
        batches = EpochBatches(len(ds), self.batch_size, self.seed) if shuffle else \
            BatchSampler(SequentialSampler(ds), self.batch_size, drop_last=False)
        return DataLoader(ds, sampler=batches, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def _split(self, x: Tensor, y: Tensor, val_fraction: float, test_fraction: float) -> dict[str, tuple[Tensor, Tensor]]:
        idx = split_indices(len(y), self.seed, val_fraction, test_fraction)
        return {k: (x[torch.as_tensor(v)], y[torch.as_tensor(v)]) for k, v in idx.items()}


class DigitsDataModule(TensorDataModule):
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), pixels / 16, split by seed."""

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, seed: int = 0, batch_size: int = 128, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, train_size: int | None = None) -> None:
        super().__init__(seed, batch_size, train_size)
        split_indices(10, seed, val_fraction, test_fraction)  # fail early on bad fractions
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        from sklearn.datasets import load_digits

        d = load_digits()
        return self._split(torch.as_tensor(d.data / 16.0, dtype=torch.float32), torch.as_tensor(d.target),
                           self.val_fraction, self.test_fraction)


class _Torchvision(TensorDataModule):
    """A torchvision dataset with an official test split; validation is split off train by seed."""

    dataset = ""

    def __init__(self, root: str = "data", download: bool = False, seed: int = 0, batch_size: int = 128,
                 val_fraction: float = 1 / 12, train_size: int | None = None) -> None:
        super().__init__(seed, batch_size, train_size)
        split_indices(10, seed, val_fraction, 0.0)
        self.root, self.download, self.val_fraction = root, download, val_fraction
        if not download:
            self._open(train=True)  # fail in __init__, before a Trainer writes anything

    def _open(self, train: bool):
        import torchvision

        cls = getattr(torchvision.datasets, self.dataset)
        try:
            return cls(self.root, train=train, download=self.download)
        except RuntimeError as err:
            fix = "check the network or put the files there" if self.download else "pass download=True to fetch it"
            raise FileNotFoundError(f"{self.dataset} not found under {Path(self.root).resolve()} "
                                    f"({str(err).splitlines()[0]}); {fix}") from None

    def prepare_data(self) -> None:
        if self.download:
            self._open(True), self._open(False)

    def _arrays(self, ds) -> tuple[Tensor, Tensor]:
        return torch.as_tensor(ds.data).float() / 255.0, torch.as_tensor(ds.targets)

    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        x, y = self._arrays(self._open(True))
        splits = self._split(x, y, self.val_fraction, 0.0)
        splits["test"] = self._arrays(self._open(False))
        return splits


class MNISTDataModule(_Torchvision):
    """torchvision MNIST (60,000 train of which 1/12 validation, 10,000 test), pixels / 255."""

    dataset = "MNIST"
    input_shape = (1, 28, 28)
    num_classes = 10


class FashionMNISTDataModule(_Torchvision):
    """torchvision Fashion-MNIST, as MNIST."""

    dataset = "FashionMNIST"
    input_shape = (1, 28, 28)
    num_classes = 10


class CIFAR10DataModule(_Torchvision):
    """torchvision CIFAR-10 (50,000 train, 10,000 test), (3, 32, 32) channel-major, pixels / 255."""

    dataset = "CIFAR10"
    input_shape = (3, 32, 32)
    num_classes = 10

    def _arrays(self, ds) -> tuple[Tensor, Tensor]:
        return torch.as_tensor(ds.data).permute(0, 3, 1, 2).float() / 255.0, torch.as_tensor(ds.targets)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) as a numpy array; ``ValueError`` naming the file when malformed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read IDX file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) != offset + math.prod(dims):
        raise ValueError(f"{path}: truncated or malformed IDX file ({len(raw) - offset} bytes of data, "
                         f"expected {math.prod(dims)} for shape {tuple(dims)})")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _idx_pairs(root: Path) -> dict[str, tuple[Path, Path]]:
    """``{prefix: (images, labels)}`` for each images/labels pair in a folder."""
    pairs = {}
    # both the ``train-images-idx3-ubyte`` and the ``train-images.idx3-ubyte`` spellings are common
    for images in sorted(root.glob("*-images[-.]idx3-ubyte*")):
        prefix = images.name.split("-images")[0]
        labels = sorted(root.glob(f"{prefix}-labels[-.]idx1-ubyte*"))
        if labels and prefix not in pairs:
            pairs[prefix] = (images, labels[0])
    return pairs


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) and labels (N,) uint8 of one IDX pair, checked against each other."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3:
        raise ValueError(f"{images}: expected 3-D images (N, H, W), found shape {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"{labels}: expected 1-D labels (N,), found shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    return x, y


class IDXDataModule(TensorDataModule):
    """A folder of IDX files (e.g. ``../shared/data/mnist-t10k``), pixels / 255.

    With a ``train-*`` and a ``t10k-*`` pair they are train (validation split off by seed,
    ``test_fraction`` unused) and test; with one pair, it is split by seed into train / val / test.
    Every file is read and checked in ``__init__`` (MNIST-sized folders take well under a second).
    """

    def __init__(self, root: str, seed: int = 0, batch_size: int = 128, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, train_size: int | None = None) -> None:
        super().__init__(seed, batch_size, train_size)
        split_indices(10, seed, val_fraction, test_fraction)
        self.root, self.val_fraction, self.test_fraction = Path(root), val_fraction, test_fraction
        if not self.root.is_dir():
            raise FileNotFoundError(f"IDX data folder {self.root} does not exist")
        self.pairs = _idx_pairs(self.root)
        if not self.pairs:
            raise FileNotFoundError(f"IDX data folder {self.root} holds no *-images-idx3-ubyte[.gz] / "
                                    "*-labels-idx1-ubyte[.gz] pair")
        if len(self.pairs) > 1 and set(self.pairs) != {"train", "t10k"}:
            raise ValueError(f"IDX data folder {self.root} holds pairs {', '.join(self.pairs)}: expected one "
                             "pair, or a train-* and a t10k-* pair")
        self._arrays = {k: _read_pair(*v) for k, v in self.pairs.items()}
        shapes = {x.shape[1:] for x, _ in self._arrays.values()}
        if len(shapes) > 1:
            raise ValueError(f"IDX data folder {self.root}: train and t10k images differ in size {sorted(shapes)}")
        self.input_shape = (1, *shapes.pop())
        self.num_classes = int(max(y.max(initial=0) for _, y in self._arrays.values())) + 1

    def _pair(self, prefix: str) -> tuple[Tensor, Tensor]:
        x, y = self._arrays[prefix]
        return torch.as_tensor(x.astype(np.float32) / 255.0), torch.as_tensor(y.astype(np.int64))

    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        if len(self.pairs) == 2:
            splits = self._split(*self._pair("train"), self.val_fraction, 0.0)
            splits["test"] = self._pair("t10k")
            return splits
        return self._split(*self._pair(next(iter(self.pairs))), self.val_fraction, self.test_fraction)


class CSVDataModule(TensorDataModule):
    """A CSV file with a header: numeric feature columns and a ``target`` column (numbers or names,
    mapped to class indices in sorted order, kept in ``classes``); features standardised with the
    train split's mean and std."""

    def __init__(self, path: str, target: str = "label", seed: int = 0, batch_size: int = 128,
                 val_fraction: float = 0.15, test_fraction: float = 0.15, train_size: int | None = None) -> None:
        super().__init__(seed, batch_size, train_size)
        split_indices(10, seed, val_fraction, test_fraction)
        self.path, self.target = Path(path), target
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        if not self.path.is_file():
            raise FileNotFoundError(f"CSV file {self.path} does not exist")
        try:  # decoded whole, so an error's byte is the file's; a BOM (Excel) is not a column name
            text = self.path.read_bytes().decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as err:
            raise ValueError(f"{self.path}: not a UTF-8 text CSV file (byte {err.start} is not UTF-8)") from None
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows:
            raise ValueError(f"{self.path}: empty CSV file")
        header = [h.strip() for h in rows[0]]
        if target not in header:
            raise ValueError(f"{self.path}: no target column {target!r} (columns: {', '.join(header)})")
        # (file line, row) pairs, blank lines dropped, so errors can point at the line
        body = [(n, r) for n, r in enumerate(rows[1:], start=2) if r]
        if not body:
            raise ValueError(f"{self.path}: no data rows under the header")
        if len(header) < 2:
            raise ValueError(f"{self.path}: no feature columns besides the target {target!r}")
        for n, r in body:
            if len(r) != len(header):
                raise ValueError(f"{self.path}: line {n} has {len(r)} values, expected {len(header)} (one per column)")
        t = header.index(target)
        cols = [i for i in range(len(header)) if i != t]
        labels = [r[t].strip() for _, r in body]
        try:
            x = np.array([[r[i] for i in cols] for _, r in body], dtype=np.float32)
        except ValueError:
            raise ValueError(self._non_numeric(header, cols, body)) from None
        bad = ~np.isfinite(x)
        if bad.any():  # NaN or inf would reach the loss and read as divergence
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(f"{self.path}: feature column {header[cols[col]]!r} holds {body[row][1][cols[col]].strip()!r} "
                             f"(line {body[row][0]}, {int(bad.sum())} such cells in all); every feature must be a "
                             "finite number")
        keys = self._classes(labels, body)
        self.classes = keys
        index = {k: i for i, k in enumerate(keys)}
        self._x, self._y = torch.as_tensor(x), torch.as_tensor([index[v] for v in labels])
        self.input_shape = (len(cols),)
        self.num_classes = len(keys)

    def _classes(self, labels: list[str], body: list[tuple[int, list[str]]]) -> list[str]:
        """The sorted class names; a warning when most labels are numbers but some are not (each such
        stray label would make a class of its own)."""
        def number(v: str) -> bool:
            try:
                float(v)
                return True
            except ValueError:
                return False

        stray = [(n, v) for (n, _), v in zip(body, labels) if not number(v)]
        if not stray:
            return sorted(set(labels), key=float)
        if len(stray) < len(labels) / 2:
            warnings.warn(f"{self.path}: {len(stray)} labels of column {self.target!r} are not numbers like the "
                          f"others (first {stray[0][1]!r} on line {stray[0][0]}); each distinct one makes a class "
                          "of its own", stacklevel=2)
        return sorted(set(labels))

    def _non_numeric(self, header: list[str], cols: list[int], body: list[tuple[int, list[str]]]) -> str:
        """The message naming the first feature value that is not a number."""
        for n, r in body:
            for i in cols:
                try:
                    float(r[i])
                except ValueError:
                    return (f"{self.path}: feature column {header[i]!r} is not numeric (line {n}: {r[i]!r}); "
                            f"every column but the target {self.target!r} must hold numbers")
        return f"{self.path}: feature columns must be numeric"

    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        splits = self._split(self._x, self._y, self.val_fraction, self.test_fraction)
        x = splits["train"][0]
        mean, std = x.mean(0), x.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return {k: ((v - mean) / std, y) for k, (v, y) in splits.items()}
