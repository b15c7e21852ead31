import gzip
import struct

import numpy as np
import pytest
import torch

from evolution.data import SPLITS, CSVDataModule, DigitsDataModule, IDXDataModule, MNISTDataModule, read_idx


def test_digits_splits_are_disjoint_seeded_and_complete():
    d = DigitsDataModule(seed=0)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    xs = [d.tensors(s)[0] for s in SPLITS]
    assert sum(len(x) for x in xs) == 1797 and [len(x) for x in xs] == [1257, 270, 270]
    assert all(x.shape[1] == 64 and x.dtype == torch.float32 for x in xs)
    assert 0 <= min(x.min() for x in xs) and max(x.max() for x in xs) <= 1
    rows = torch.cat(xs)
    assert len(torch.unique(rows, dim=0)) >= 1790  # (the set itself holds a few duplicate images)
    again = DigitsDataModule(seed=0).tensors("val")[1]
    other = DigitsDataModule(seed=1).tensors("val")[1]
    assert torch.equal(again, d.tensors("val")[1]) and not torch.equal(other, again)


def test_train_loader_covers_the_split_once_per_epoch():
    d = DigitsDataModule(batch_size=100)
    x, y = d.tensors("train")
    seen = torch.cat([b[1] for b in d.train_dataloader()])
    assert len(seen) == len(y) and torch.equal(seen.sort().values, y.sort().values)
    first = next(iter(d.train_dataloader()))
    assert first[0].shape == (100, 64) and first[1].dtype == torch.int64
    val = torch.cat([b[0] for b in d.val_dataloader()])
    assert torch.equal(val, d.tensors("val")[0])  # not shuffled


def _write_idx(path, array, gz=True):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_idx_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 5, 4))
    labels = rng.integers(0, 3, size=50)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    d = IDXDataModule(str(tmp_path), val_fraction=0.2, test_fraction=0.2)
    assert d.input_shape == (1, 5, 4) and d.num_classes == 3
    assert [len(d.tensors(s)[1]) for s in SPLITS] == [30, 10, 10]
    x = torch.cat([d.tensors(s)[0] for s in SPLITS])
    y = torch.cat([d.tensors(s)[1] for s in SPLITS])
    order = np.random.default_rng(0).permutation(50)
    perm = np.concatenate([order[20:], order[10:20], order[:10]])
    assert torch.equal(x, torch.as_tensor(images[perm].reshape(50, -1) / 255.0, dtype=torch.float32))
    assert torch.equal(y, torch.as_tensor(labels[perm]))


def test_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX data folder .*nope does not exist"):
        IDXDataModule(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="holds no"):
        IDXDataModule(str(tmp_path))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 2, 2)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    raw = gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz").read()
    gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb").write(raw[:-3])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: truncated or malformed IDX file"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte.gz")
    (tmp_path / "bad-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad-labels-idx1-ubyte: not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad-labels-idx1-ubyte")


def test_mnist_t10k_loads_the_real_test_set(mnist_t10k):
    d = IDXDataModule(str(mnist_t10k), val_fraction=0.0, test_fraction=0.2)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert [len(d.tensors(s)[1]) for s in ("train", "test")] == [8000, 2000]
    assert torch.equal(d.tensors("val")[1], d.tensors("test")[1])  # an empty val split validates on test
    y = torch.cat([d.tensors("train")[1], d.tensors("test")[1]])
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(40, 3))
    names = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, 40)]
    lines = ["a,b,species,c"] + [f"{r[0]},{r[1]},{n},{r[2]}" for r, n in zip(x, names)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    d = CSVDataModule(str(tmp_path / "t.csv"), target="species", val_fraction=0.25, test_fraction=0.25)
    assert d.input_shape == (3,) and d.num_classes == 3 and d.classes == ["cat", "dog", "emu"]
    xt, yt = d.tensors("train")
    assert len(yt) == 20
    assert torch.allclose(xt.mean(0), torch.zeros(3), atol=1e-5) and torch.allclose(xt.std(0), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match=r"no target column 'label' \(columns: a, b, species, c\)"):
        CSVDataModule(str(tmp_path / "t.csv"))
    (tmp_path / "s.csv").write_text("a,label\nx,1\n")
    with pytest.raises(ValueError, match="feature columns must be numeric"):
        CSVDataModule(str(tmp_path / "s.csv"))
    with pytest.raises(FileNotFoundError, match="CSV file .*missing.csv does not exist"):
        CSVDataModule(str(tmp_path / "missing.csv"))


def test_torchvision_without_download_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        MNISTDataModule(root=str(tmp_path))
    msg = str(err.value)
    assert "MNIST not found under" in msg and "download=True" in msg and "\n" not in msg


def test_bad_fractions_and_split_names():
    with pytest.raises(ValueError, match="expected fractions"):
        DigitsDataModule(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        DigitsDataModule().tensors("dev")
