"""The Module system, layers, initialisation, ResNet-18 and tg.save/tg.load."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.register_buffer("scratch", tg.zeros(2), persistent=False)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        self.tied = self.head[1]  # the same module under two names: its parameters once

    def forward(self, x):
        return self.head(self.block.bn(self.block.conv(x)))


def test_registration_order_and_pytorch_key_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "block.conv.weight",
        "block.conv.bias",
        "block.bn.weight",
        "block.bn.bias",
        "head.1.weight",
        "head.1.bias",
    ]
    assert list(net.state_dict()) == [
        "block.conv.weight",
        "block.conv.bias",
        "block.bn.weight",
        "block.bn.bias",
        "block.bn.running_mean",
        "block.bn.running_var",
        "block.bn.num_batches_tracked",
        "head.1.weight",
        "head.1.bias",
        "tied.weight",
        "tied.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "block.scratch",
        "block.bn.running_mean",
        "block.bn.running_var",
        "block.bn.num_batches_tracked",
    ]
    assert [n for n, _ in net.named_children()] == ["block", "head", "tied"]
    assert len(list(net.modules())) == 7
    assert net.state_dict()["block.bn.num_batches_tracked"].dtype == np.int64
    assert not net.state_dict()["block.conv.weight"].requires_grad


def test_assignment_replaces_and_none_clears():
    lin = nn.Linear(3, 2)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        lin.weight = tg.zeros(2, 3)
    lin.weight = nn.Parameter(tg.ones(2, 3))
    assert lin.weight.sum().item() == 6
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        lin.nope  # noqa: B018

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tg.zeros(1))

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        Early()


def test_train_eval_zero_grad_requires_grad():
    net = Net()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(tg.randn(2, 2, 2, 2)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(float(p.grad.abs().sum()) == 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_load_state_dict_round_trip_and_errors():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=k)
    bad = OrderedDict(a.state_dict())
    del bad["block.conv.bias"]
    bad["extra.weight"] = tg.zeros(1)
    bad["head.1.weight"] = tg.zeros(5, 12)
    with pytest.raises(RuntimeError) as e:
        b.load_state_dict(bad)
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for Net:")
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert 'Missing key(s) in state_dict: "block.conv.bias"' in msg
    assert "size mismatch for head.1.weight: copying a param with shape (5, 12)" in msg
    del bad["head.1.weight"]
    result = b.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["block.conv.bias", "head.1.weight"]
    assert result.unexpected_keys == ["extra.weight"]


def test_load_state_dict_keeps_the_parameter_objects():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    w = b.weight
    b.load_state_dict(a.state_dict())
    assert b.weight is w
    np.testing.assert_array_equal(w.detach().numpy(), a.weight.detach().numpy())


def test_default_initialisation_is_pytorchs():
    tg.manual_seed(0)
    lin = nn.Linear(50, 40)
    bound = 1 / math.sqrt(50)
    w = lin.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(lin.bias.detach().numpy()).max() <= bound
    # uniform(-b, b) has standard deviation b / sqrt(3)
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound
    conv = nn.Conv2d(4, 8, 3)
    assert np.abs(conv.weight.detach().numpy()).max() <= 1 / math.sqrt(4 * 9)
    r = tg.models.resnet18()
    std = r.conv1.weight.detach().numpy().std()
    assert abs(std - math.sqrt(2 / (64 * 49))) < 0.05 * std  # kaiming normal, fan_out
    assert (r.bn1.weight == 1).all() and (r.bn1.bias == 0).all()


def test_to_dtype_in_place_and_device_errors():
    lin = nn.Linear(3, 2)
    w = lin.weight
    lin.double()
    assert lin.weight is w and w.dtype == np.float64
    assert lin(tg.ones(1, 3, dtype=tg.float64)).dtype == np.float64
    with pytest.raises(RuntimeError, match="unknown device 'tpu'"):
        lin.to("tpu")


def test_reprs_are_pytorchs():
    assert repr(nn.Linear(3, 2)) == "Linear(in_features=3, out_features=2, bias=True)"
    assert repr(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)) == (
        "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)"
    )
    assert repr(nn.Sequential(nn.ReLU(), nn.Identity())) == (
        "Sequential(\n  (0): ReLU()\n  (1): Identity()\n)"
    )
    p = nn.Parameter(tg.tensor([1.0]))
    assert str(p) == "Parameter containing:\ntensor([1.], requires_grad=True)"


def test_sequential_and_modulelist_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert list(seq[:2].state_dict()) == ["0.weight", "0.bias"]
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert [n for n, _ in ml.named_parameters()][-1] == "2.bias"
    with pytest.raises(IndexError, match="out of range"):
        ml[3]  # noqa: B018


def test_layer_modules_shapes_and_modes():
    x = tg.randn(2, 3, 8, 8)
    assert nn.MaxPool2d(2)(x).shape == (2, 3, 4, 4)
    assert nn.AvgPool2d(3, 2, 1)(x).shape == (2, 3, 4, 4)
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (2, 3, 1, 1)
    assert nn.LayerNorm(8)(x).shape == x.shape
    bn = nn.BatchNorm1d(3)
    bn(tg.randn(4, 3))
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    bn(tg.randn(4, 3))
    assert int(bn.num_batches_tracked) == 1
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        bn(tg.randn(4))
    cumulative = nn.BatchNorm1d(2, momentum=None)
    batches = [tg.randn(5, 2) for _ in range(3)]
    for b in batches:
        cumulative(b)
    mean = np.mean([b.numpy().mean(axis=0) for b in batches], axis=0)
    np.testing.assert_allclose(cumulative.running_mean.numpy(), mean, rtol=1e-5)
    drop = nn.Dropout(0.5)
    drop.eval()
    assert drop(x) is x
    emb = nn.Embedding(10, 4, padding_idx=0)
    assert (emb.weight[0] == 0).all()
    assert emb(tg.tensor([[1, 2, 0]])).shape == (1, 3, 4)


def test_resnet18_architecture_matches_torchvision():
    model = tg.models.resnet18()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    keys = list(model.state_dict())
    assert len(keys) == 122
    assert keys[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert "layer2.0.downsample.0.weight" in keys and "layer4.1.bn2.num_batches_tracked" in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert tg.models.resnet18(num_classes=10).fc.weight.shape == (10, 512)


def test_save_load_state_dicts_without_pickle(tmp_path):
    model = Net()
    path = tmp_path / "net.npz"
    tg.save(model.state_dict(), path)
    with np.load(path, allow_pickle=False) as raw:  # readable without tracegrad
        assert "block.conv.weight" in raw.files
    loaded = tg.load(path)
    assert list(loaded) == list(model.state_dict())
    assert loaded["block.bn.num_batches_tracked"].shape == ()
    other = Net()
    other.load_state_dict(loaded)
    np.testing.assert_array_equal(
        other.head[1].weight.detach().numpy(), model.head[1].weight.detach().numpy()
    )
    # an optimizer's state dict: int keys, tuples, numbers, nested dicts
    opt = tg.optim.Adam(model.parameters(), betas=(0.8, 0.9))
    model(tg.randn(2, 2, 2, 2)).sum().backward()
    opt.step()
    tg.save(opt.state_dict(), tmp_path / "opt.npz")
    state = tg.load(tmp_path / "opt.npz")
    assert state["param_groups"][0]["betas"] == (0.8, 0.9)
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    # a plain np.savez file (torchvision weights converted as in docs/nn.md)
    np.savez(tmp_path / "plain.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    resnet_like = tg.load(tmp_path / "plain.npz")
    assert isinstance(resnet_like, OrderedDict) and list(resnet_like) == list(model.state_dict())
    with pytest.raises(TypeError, match="never pickles"):
        tg.save({"f": object()}, tmp_path / "x.npz")


def test_resnet18_loads_weights_from_a_path(tmp_path):
    a = tg.models.resnet18(num_classes=5)
    tg.save(a.state_dict(), tmp_path / "r.npz")
    b = tg.models.resnet18(num_classes=5, weights=tmp_path / "r.npz")
    np.testing.assert_array_equal(a.fc.weight.detach().numpy(), b.fc.weight.detach().numpy())
    with pytest.raises(RuntimeError, match="size mismatch for fc.weight"):
        tg.models.resnet18(weights=tmp_path / "r.npz")


def test_linear_without_bias():
    # regression: bias=False raised KeyError "attribute 'bias' already exists"
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None
    assert list(lin.state_dict()) == ["weight"]
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    x = tg.randn(4, 3)
    np.testing.assert_allclose(
        lin(x).detach().numpy(), x.numpy() @ lin.weight.detach().numpy().T, rtol=1e-6
    )
    assert "bias=False" in repr(lin)
