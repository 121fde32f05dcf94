"""tg.utils.data: datasets, samplers, DataLoader and collation with PyTorch's semantics."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn
from tracegrad.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    StackDataset,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    random_split,
)


def _ds(n=10):
    return TensorDataset(tg.arange(2.0 * n).reshape(n, 2), tg.arange(n))


def test_tensor_dataset():
    ds = _ds(5)
    assert len(ds) == 5
    x, y = ds[3]
    assert x.tolist() == [6.0, 7.0] and y.item() == 3
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        TensorDataset(tg.zeros(3, 2), tg.zeros(4))


def test_sequential_batches_drop_last_and_len():
    loader = DataLoader(_ds(10), batch_size=4)
    ys = [y.tolist() for _, y in loader]
    assert ys == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(loader) == 3
    xs = next(iter(loader))[0]
    assert xs.shape == (4, 2) and xs.dtype == tg.float32
    dropped = DataLoader(_ds(10), batch_size=4, drop_last=True)
    assert [y.tolist() for _, y in dropped] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(dropped) == 2


def test_shuffle_is_a_permutation_new_every_epoch_and_seeded_by_the_generator():
    def epochs(seed):
        loader = DataLoader(
            _ds(20), batch_size=5, shuffle=True, generator=tg.Generator().manual_seed(seed)
        )
        return [[int(v) for _, y in loader for v in y.tolist()] for _ in range(2)]

    a, b = epochs(0)
    assert sorted(a) == list(range(20)) and sorted(b) == list(range(20))
    assert a != b  # a new order each epoch
    assert epochs(0) == [a, b]  # reproducible
    assert epochs(1) != [a, b]
    tg.manual_seed(3)
    c = [int(v) for _, y in DataLoader(_ds(20), batch_size=5, shuffle=True) for v in y.tolist()]
    tg.manual_seed(3)
    d = [int(v) for _, y in DataLoader(_ds(20), batch_size=5, shuffle=True) for v in y.tolist()]
    assert c == d  # the global generator without one


def test_argument_errors_are_pytorchs():
    ds = _ds()
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_size=3, batch_sampler=BatchSampler(SequentialSampler(ds), 2, False))
    with pytest.raises(ValueError, match="mutually exclusive with drop_last"):
        DataLoader(ds, batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        BatchSampler(SequentialSampler(ds), 0, False)


def test_num_workers_gives_the_same_batches():
    a = [y.tolist() for _, y in DataLoader(_ds(), batch_size=3, num_workers=2)]
    b = [y.tolist() for _, y in DataLoader(_ds(), batch_size=3)]
    assert a == b


def test_batch_sampler_and_no_auto_batching():
    ds = _ds(6)
    bs = BatchSampler(SequentialSampler(ds), 4, drop_last=False)
    assert list(bs) == [[0, 1, 2, 3], [4, 5]] and len(bs) == 2
    assert [y.tolist() for _, y in DataLoader(ds, batch_sampler=bs)] == [[0, 1, 2, 3], [4, 5]]

    class Arrays(Dataset):
        def __getitem__(self, i):
            return np.full(2, i, dtype=np.float32)

        def __len__(self):
            return 3

    items = list(DataLoader(Arrays(), batch_size=None))
    assert len(items) == 3 and isinstance(items[1], tg.Tensor) and items[1].tolist() == [1, 1]


def test_default_collate():
    Point = namedtuple("Point", "x y")
    batch = [
        {"a": 1.0, "b": 2, "c": "s", "d": np.ones(2), "e": (tg.ones(3), True), "p": Point(1, 2)},
        {"a": 3.0, "b": 4, "c": "t", "d": np.zeros(2), "e": (tg.zeros(3), False), "p": Point(3, 4)},
    ]
    out = default_collate(batch)
    assert out["a"].dtype == tg.float64 and out["a"].tolist() == [1.0, 3.0]
    assert out["b"].dtype == tg.int64 and out["b"].tolist() == [2, 4]
    assert out["c"] == ["s", "t"]
    assert out["d"].shape == (2, 2) and out["d"].dtype == tg.float64
    assert isinstance(out["e"], list) and out["e"][0].shape == (2, 3)
    assert out["e"][1].dtype == tg.bool and out["e"][1].tolist() == [True, False]
    assert isinstance(out["p"], Point) and out["p"].x.tolist() == [1, 3]
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object(), object()])


def test_iterable_dataset():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

        def __len__(self):
            return 7

    loader = DataLoader(Stream(), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(loader) == 3
    assert len(DataLoader(Stream(), batch_size=3, drop_last=True)) == 2
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(), shuffle=True)


def test_random_split_subset_concat_stack():
    ds = _ds(10)
    parts = random_split(ds, [7, 3], generator=tg.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [7, 3]
    idx = sorted(parts[0].indices + parts[1].indices)
    assert idx == list(range(10))
    again = random_split(ds, [7, 3], generator=tg.Generator().manual_seed(0))
    assert again[0].indices == parts[0].indices
    fr = random_split(_ds(11), [0.5, 0.3, 0.2], generator=tg.Generator().manual_seed(1))
    assert [len(p) for p in fr] == [6, 3, 2]  # floor 5, 3, 2; the remainder to the first
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [5, 4])
    sub = Subset(ds, [9, 0])
    assert sub[0][1].item() == 9 and len(sub) == 2
    cat = ConcatDataset([Subset(ds, [0, 1]), Subset(ds, [5])])
    assert len(cat) == 3 and cat[2][1].item() == 5 and cat[-1][1].item() == 5
    assert len(ds + ds) == 20
    st = StackDataset(ds, Subset(ds, list(range(9, -1, -1))))
    assert st[0][1][1].item() == 9


def test_samplers():
    ds = _ds(6)
    assert list(SequentialSampler(ds)) == list(range(6))
    r = RandomSampler(ds, generator=tg.Generator().manual_seed(0))
    assert sorted(r) == list(range(6)) and len(r) == 6
    rr = list(
        RandomSampler(ds, replacement=True, num_samples=50, generator=tg.Generator().manual_seed(0))
    )
    assert len(rr) == 50 and set(rr) <= set(range(6))
    assert sorted(SubsetRandomSampler([5, 1, 3])) == [1, 3, 5]
    w = list(
        WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 400, generator=tg.Generator().manual_seed(0))
    )
    assert set(w) == {1, 3} and 0.65 < w.count(3) / 400 < 0.85
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(ds, num_samples=0)


def test_a_tutorial_training_loop_jitted_equals_eager():
    r = np.random.default_rng(0)
    X = tg.tensor(r.standard_normal((50, 4)).astype(np.float32))
    Y = tg.tensor(r.integers(0, 3, 50))
    ds = TensorDataset(X, Y)

    def train(compiled):
        tg.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        f = tg.jit(step) if compiled else step
        loader = DataLoader(
            ds, batch_size=16, shuffle=True, generator=tg.Generator().manual_seed(7)
        )
        losses = [f(x, y).item() for _ in range(2) for x, y in loader]
        return losses, model

    (la, ma), (lb, mb) = train(False), train(True)
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    for p, q in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
