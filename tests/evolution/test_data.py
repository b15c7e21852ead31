import gzip
import struct

import numpy as np
import pytest
import torch

from evolution.data import (SPLITS, CIFAR10DataModule, CSVDataModule, DigitsDataModule, FashionMNISTDataModule,
                            IDXDataModule, MNISTDataModule, read_idx, split_indices)


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two (N, D) tensors hold the same multiset of rows."""
    ua, ca = torch.unique(a, dim=0, return_counts=True)
    ub, cb = torch.unique(b, dim=0, return_counts=True)
    return torch.equal(ua, ub) and torch.equal(ca, cb)


def test_digits_splits_are_disjoint_seeded_and_complete():
    d = DigitsDataModule(seed=0)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    xs = [d.tensors(s)[0] for s in SPLITS]
    assert sum(len(x) for x in xs) == 1797 and [len(x) for x in xs] == [1257, 270, 270]
    assert all(x.shape[1] == 64 and x.dtype == torch.float32 for x in xs)
    assert all(d.tensors(s)[1].dtype == torch.int64 for s in SPLITS)
    assert min(x.min() for x in xs) == 0 and max(x.max() for x in xs) == 1  # pixels / 16
    from sklearn.datasets import load_digits

    # disjoint and complete: the splits together are exactly the dataset, image for label
    raw = load_digits()
    whole = torch.cat([torch.as_tensor(raw.data / 16.0, dtype=torch.float32),
                       torch.as_tensor(raw.target, dtype=torch.float32)[:, None]], 1)
    ours = torch.cat([torch.cat([d.tensors(s)[0], d.tensors(s)[1][:, None].float()], 1) for s in SPLITS])
    assert _same_rows(ours, whole)
    again = DigitsDataModule(seed=0).tensors("val")
    other = DigitsDataModule(seed=1).tensors("val")
    assert torch.equal(again[0], d.tensors("val")[0]) and not torch.equal(other[0], again[0])


def test_train_loader_covers_the_split_once_per_epoch_in_a_seeded_order():
    d = DigitsDataModule(batch_size=100)
    x, y = d.tensors("train")
    loader = d.train_dataloader()
    epochs = [list(loader) for _ in range(2)]
    for batches in epochs:
        assert [len(b[1]) for b in batches] == [100] * 12 + [57]
        assert all(b[0].shape[1] == 64 and b[1].dtype == torch.int64 for b in batches)
        seen = torch.cat([torch.cat([b[0], b[1][:, None].float()], 1) for b in batches])
        assert _same_rows(seen, torch.cat([x, y[:, None].float()], 1))
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])  # a new order each epoch
    assert not torch.equal(epochs[0][0][0], x[:100])  # shuffled
    assert torch.equal(next(iter(DigitsDataModule(batch_size=100).train_dataloader()))[0], epochs[0][0][0])
    other = DigitsDataModule(batch_size=100, seed=1)
    assert not torch.equal(next(iter(other.train_dataloader()))[1], other.tensors("train")[1][:100])
    for split, loader in (("val", d.val_dataloader()), ("test", d.test_dataloader())):  # in order, whole
        xs, ys = zip(*loader)
        assert torch.equal(torch.cat(xs), d.tensors(split)[0]) and torch.equal(torch.cat(ys), d.tensors(split)[1])


def test_train_size_keeps_the_first_of_the_shuffled_train_split():
    full, small = DigitsDataModule(seed=3), DigitsDataModule(seed=3, train_size=100)
    assert torch.equal(small.tensors("train")[0], full.tensors("train")[0][:100])
    assert torch.equal(small.tensors("val")[0], full.tensors("val")[0])
    assert sum(len(b[1]) for b in small.train_dataloader()) == 100
    with pytest.raises(ValueError, match="train_size 0"):
        DigitsDataModule(train_size=0)


def _write_idx(path, array, gz=True):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 5, 4))
    labels = rng.integers(0, 3, size=50)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, gz=False)  # plain files work too
    d = IDXDataModule(str(tmp_path), val_fraction=0.2, test_fraction=0.2)
    assert d.input_shape == (1, 5, 4) and d.num_classes == 3
    assert [len(d.tensors(s)[1]) for s in SPLITS] == [30, 10, 10]
    x = torch.cat([d.tensors(s)[0] for s in SPLITS])
    y = torch.cat([d.tensors(s)[1] for s in SPLITS])
    order = np.random.default_rng(0).permutation(50)
    perm = np.concatenate([order[20:], order[10:20], order[:10]])
    assert torch.equal(x, torch.as_tensor(images[perm].reshape(50, -1) / 255.0, dtype=torch.float32))
    assert torch.equal(y, torch.as_tensor(labels[perm]))


def test_idx_train_and_t10k_pairs_are_train_and_test(tmp_path):
    rng = np.random.default_rng(1)
    train, test = rng.integers(0, 256, size=(40, 3, 3)), rng.integers(0, 256, size=(12, 3, 3))
    _write_idx(tmp_path / "train-images.idx3-ubyte", train, gz=False)  # the dot spelling
    _write_idx(tmp_path / "train-labels.idx1-ubyte", np.arange(40) % 4, gz=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(12) % 5)
    d = IDXDataModule(str(tmp_path), val_fraction=0.25, test_fraction=0.5)  # test_fraction unused here
    assert d.input_shape == (1, 3, 3) and d.num_classes == 5
    assert [len(d.tensors(s)[1]) for s in SPLITS] == [30, 10, 12]
    assert torch.equal(d.tensors("test")[0], torch.as_tensor(test.reshape(12, 9) / 255.0, dtype=torch.float32))


def test_empty_val_split_validates_on_test(tmp_path):
    _write_idx(tmp_path / "x-images-idx3-ubyte.gz", np.arange(20 * 4).reshape(20, 2, 2))
    _write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.arange(20) % 2)
    d = IDXDataModule(str(tmp_path), val_fraction=0.0, test_fraction=0.25)
    assert [len(d.tensors(s)[1]) for s in ("train", "test")] == [15, 5]
    assert torch.equal(d.tensors("val")[0], d.tensors("test")[0])
    assert torch.equal(torch.cat([b[0] for b in d.val_dataloader()]), d.tensors("test")[0])


def test_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX data folder .*nope does not exist"):
        IDXDataModule(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="holds no"):
        IDXDataModule(str(tmp_path))
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    _write_idx(images, np.zeros((4, 2, 2)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(ValueError, match="holds 4 images but .* holds 3 labels"):
        IDXDataModule(str(tmp_path))
    with gzip.open(images) as f:
        raw = f.read()
    with gzip.open(images, "wb") as f:
        f.write(raw[:-3])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: truncated or malformed IDX file"):
        IDXDataModule(str(tmp_path))
    with gzip.open(images, "wb") as f:
        f.write(b"\x01\x02\x03\x04" + raw[4:])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: not an unsigned-byte IDX file"):
        IDXDataModule(str(tmp_path))
    images.write_bytes(raw)  # not gzip despite the name
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: cannot read IDX file"):
        read_idx(images)
    _write_idx(images, np.zeros((3, 2, 2)))
    _write_idx(tmp_path / "a-images-idx3-ubyte.gz", np.zeros((3, 2, 2)))
    _write_idx(tmp_path / "a-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(ValueError, match="holds pairs a, t10k: expected one pair"):
        IDXDataModule(str(tmp_path))


def test_mnist_t10k_loads_the_real_test_set(mnist_t10k):
    d = IDXDataModule(str(mnist_t10k), val_fraction=0.0, test_fraction=0.2)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert [len(d.tensors(s)[1]) for s in ("train", "test")] == [8000, 2000]
    x = torch.cat([d.tensors("train")[0], d.tensors("test")[0]])
    assert x.shape == (10000, 784) and x.min() == 0 and x.max() == 1
    y = torch.cat([d.tensors("train")[1], d.tensors("test")[1]])
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")


def test_csv_standardises_on_train_and_maps_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(40, 3)).astype(np.float32)
    names = np.array(["emu", "cat", "dog"])[rng.integers(0, 3, 40)]
    _write_csv(tmp_path / "t.csv", ["a", "b", "species", "c"], [(r[0], r[1], n, r[2]) for r, n in zip(x, names)])
    d = CSVDataModule(str(tmp_path / "t.csv"), target="species", val_fraction=0.25, test_fraction=0.25)
    assert d.input_shape == (3,) and d.num_classes == 3 and d.classes == ["cat", "dog", "emu"]
    xt, yt = d.tensors("train")
    assert len(yt) == 20
    assert torch.allclose(xt.mean(0), torch.zeros(3), atol=1e-5) and torch.allclose(xt.std(0), torch.ones(3), atol=1e-5)
    idx = split_indices(40, 0, 0.25, 0.25)
    raw = torch.as_tensor(x)
    mean, std = raw[idx["train"]].mean(0), raw[idx["train"]].std(0)
    xv, yv = d.tensors("val")
    assert torch.allclose(xv, (raw[idx["val"]] - mean) / std, atol=1e-5)  # the train split's statistics
    assert [d.classes[i] for i in yv] == list(names[idx["val"]])


def test_csv_numeric_labels_sort_as_numbers_and_constant_features_stay_finite(tmp_path):
    labels = np.array([10, 2, 9])[np.arange(30) % 3]
    _write_csv(tmp_path / "n.csv", ["f", "g", "label"], [(i, 7, c) for i, c in enumerate(labels)])
    d = CSVDataModule(str(tmp_path / "n.csv"))
    assert d.classes == ["2", "9", "10"] and d.num_classes == 3
    x, y = d.tensors("train")
    assert torch.equal(x[:, 1], torch.zeros(len(x)))  # std 0 -> divide by 1
    expected = np.searchsorted([2, 9, 10], labels[split_indices(30, 0, 0.15, 0.15)["train"]])
    assert torch.equal(y, torch.as_tensor(expected))


def test_csv_errors(tmp_path):
    _write_csv(tmp_path / "t.csv", ["a", "b", "species"], [(1, 2, "x"), (3, 4, "y")])
    with pytest.raises(ValueError, match=r"no target column 'label' \(columns: a, b, species\)"):
        CSVDataModule(str(tmp_path / "t.csv"))
    _write_csv(tmp_path / "s.csv", ["a", "b", "label"], [(1, 2, 0), (3, "high", 1)])
    with pytest.raises(ValueError, match=r"feature column 'b' is not numeric \(line 3: 'high'\)"):
        CSVDataModule(str(tmp_path / "s.csv"))
    _write_csv(tmp_path / "r.csv", ["a", "label"], [(1, 0), (2, 1, 5)])
    with pytest.raises(ValueError, match="line 3 has 3 values, expected 2"):
        CSVDataModule(str(tmp_path / "r.csv"))
    _write_csv(tmp_path / "e.csv", ["a", "label"], [])
    with pytest.raises(ValueError, match="no data rows"):
        CSVDataModule(str(tmp_path / "e.csv"))
    with pytest.raises(FileNotFoundError, match="CSV file .*missing.csv does not exist"):
        CSVDataModule(str(tmp_path / "missing.csv"))
    rows = "a,label\n" + "1,x\n" * 5000  # past the first read chunk: the byte is counted in the file
    for name, head in (("latin.csv", b""), ("bom-latin.csv", "\ufeff".encode("utf-8"))):
        (tmp_path / name).write_bytes(head + (rows + "1,caf\u00e9\n").encode("latin-1"))
        at = len(head) + len(rows) + 5
        with pytest.raises(ValueError, match=rf"{name}: not a UTF-8 text CSV file \(byte {at} is not UTF-8\)"):
            CSVDataModule(str(tmp_path / name))


def test_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    (tmp_path / "bom.csv").write_bytes("label,a\n0,1\n1,2\n0,3\n1,4\n".encode("utf-8-sig"))
    d = CSVDataModule(str(tmp_path / "bom.csv"), val_fraction=0.25, test_fraction=0.25)
    assert d.num_classes == 2 and tuple(d.input_shape) == (1,)


@pytest.mark.parametrize("cls, name", [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST"),
                                       (CIFAR10DataModule, "CIFAR10")])
def test_torchvision_without_download_names_the_fix(tmp_path, cls, name):
    assert cls.input_shape == ((3, 32, 32) if name == "CIFAR10" else (1, 28, 28)) and cls.num_classes == 10
    with pytest.raises(FileNotFoundError) as err:
        cls(root=str(tmp_path))
    msg = str(err.value)
    assert f"{name} not found under {tmp_path}" in msg and "download=True" in msg and "\n" not in msg


def test_a_failed_download_does_not_ask_for_download(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    data = MNISTDataModule(root=str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError) as err:
        data.prepare_data()
    msg = str(err.value)
    assert "Error downloading" in msg and "check the network" in msg and "pass download=True" not in msg


def test_bad_fractions_and_split_names():
    with pytest.raises(ValueError, match="expected fractions"):
        DigitsDataModule(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        DigitsDataModule().tensors("dev")
