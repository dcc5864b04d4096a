import pytest
import torch
from torch.utils.data import DataLoader

from xor_lightning.data import XORDataset, make_xor
from xor_lightning.datamodule import XORDataModule
from xor_lightning.sampler import BatchIndexSampler, as_index


def test_shapes_dtypes_and_labels_follow_the_rule():
    X, y = make_xor(500, seed=3)
    assert X.shape == (500, 2) and y.shape == (500, 1)
    assert X.dtype == y.dtype == torch.float32
    assert X.min() >= -1 and X.max() <= 1
    assert torch.equal(y.squeeze(1), (X[:, 0] * X[:, 1] < 0).float())
    assert 0.4 < y.mean() < 0.6  # both classes, about evenly


def test_noise_jitters_points_after_labelling():
    clean_X, clean_y = make_xor(2000, noise=0.0, seed=1)
    X, y = make_xor(2000, noise=0.3, seed=1)
    assert torch.equal(y, clean_y)  # labels come from the clean points
    jitter = X - clean_X
    assert 0.25 < jitter.std() < 0.35
    assert (X.abs() > 1).any()  # jitter can push points out of the square
    wrong_side = (X[:, 0] * X[:, 1] < 0).float() != y.squeeze(1)
    assert wrong_side.any()  # so some labels now look wrong: the ambiguous points


def test_aspect_scales_the_jitter_on_x2_only():
    clean_X = make_xor(2000, noise=0.0, seed=1)[0]
    X, y = make_xor(2000, noise=0.3, seed=1)
    assert torch.equal(make_xor(2000, noise=0.3, seed=1, aspect=1.0)[0], X)  # the default
    X_flat, y_flat = make_xor(2000, noise=0.3, seed=1, aspect=0.5)
    assert torch.equal(y_flat, y) and torch.equal(X_flat[:, 0], X[:, 0])
    assert torch.allclose(X_flat[:, 1] - clean_X[:, 1], 0.5 * (X[:, 1] - clean_X[:, 1]), atol=1e-6)
    dm = XORDataModule(noise=0.3, seed=1, aspect=0.5, n_samples=2000)
    dm.setup()
    assert torch.equal(dm.datasets["train"].X, X_flat)


def test_seeding_is_deterministic_and_splits_differ():
    a, b = make_xor(100, seed=7), make_xor(100, seed=7)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(make_xor(100, seed=8)[0], a[0])
    splits = [make_xor(100, seed=7, split=k)[0] for k in range(3)]
    assert not torch.equal(splits[0], splits[1]) and not torch.equal(splits[1], splits[2])


def test_dataset_indexes_whole_batches():
    ds = XORDataset(10, seed=0)
    assert len(ds) == 10
    x, y = ds[torch.tensor([0, 3, 5])]
    assert x.shape == (3, 2) and y.shape == (3, 1)
    x, y = ds[2]
    assert x.shape == (2,) and y.shape == (1,)


def test_sampler_full_batch_and_shuffled_minibatches():
    assert list(BatchIndexSampler(400, 400)) == [slice(0, 400)]
    s = BatchIndexSampler(10, 4, shuffle=True, seed=0)
    batches = [as_index(b) for b in s]
    assert [len(b) for b in batches] == [4, 4, 2] and len(s) == 3
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    s.set_epoch(1)
    assert not torch.equal(torch.cat([as_index(b) for b in s]), torch.cat(batches))  # per epoch
    s.set_epoch(0)
    assert torch.equal(torch.cat([as_index(b) for b in s]), torch.cat(batches))  # reproducibly


@pytest.mark.parametrize("batch_size", [None, 64])
def test_datamodule_sizes_and_batches(batch_size):
    dm = XORDataModule(n_samples=200, n_val=50, n_test=60, batch_size=batch_size, seed=1)
    dm.setup("fit")
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [200, 50, 60]
    loader = dm.train_dataloader()
    assert isinstance(loader, DataLoader)
    batches = list(loader)
    assert len(batches) == len(loader) == (1 if batch_size is None else 4)
    sizes = [len(x) for x, _ in batches]
    assert sizes == ([200] if batch_size is None else [64, 64, 64, 8])
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (50, 2)  # 50 validation points fit in one batch either way
    assert not torch.equal(dm.datasets["train"].X[:50], dm.datasets["val"].X)


def test_training_chunks_group_minibatches():
    """`model.steps_per_call=4`: the training loader's items are chunks of 4 mini-batches."""
    dm = XORDataModule(n_samples=100, batch_size=10, seed=0)
    dm.setup("fit")
    chunks = list(DataLoader(dm.datasets["train"], batch_size=None, sampler=dm.sampler("train", 4)))
    assert [len(c) for c in chunks] == [4, 4, 2]
    xs = torch.cat([x for c in chunks for x, _ in c])
    assert xs.shape == (100, 2)
    assert torch.equal(xs.sort(0).values, dm.datasets["train"].X.sort(0).values)  # each point once


def test_datamodule_val_and_test_sizes_do_not_depend_on_n_samples():
    small, big = XORDataModule(n_samples=10, seed=0), XORDataModule(n_samples=1000, seed=0)
    small.setup(), big.setup()
    assert torch.equal(small.datasets["test"].X, big.datasets["test"].X)
    assert len(small.datasets["val"]) == len(big.datasets["val"]) == 400


def test_split_k_of_seed_s_is_drawn_from_generator_3s_plus_k():
    g = torch.Generator().manual_seed(3 * 7 + 2)  # docs/data.md's rule, by hand
    X = torch.rand(100, 2, generator=g) * 2 - 1
    assert torch.equal(make_xor(100, seed=7, split=2)[0], X)
