"""SEEDS.md sections 2-7: every step prints what PyTorch prints; 5-7 train a ResNet-18.

Each test runs the tutorial's code as written, with `torch` replaced by `tracegrad as tg`, and
compares the exact strings. The last test runs examples/seed_walkthrough.py end to end.
"""

import pathlib
import runpy
import subprocess
import sys

import pytest

import tracegrad as tg

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_section_2_one_element():
    x = tg.tensor(2.0, requires_grad=True)
    y = 2 * x**2 + 1
    assert str(x) == "tensor(2., requires_grad=True)"
    assert str(y) == "tensor(9., grad_fn=<AddBackward0>)"
    assert x.grad is None
    y.backward()
    assert str(x.grad) == "tensor(8.)"


def test_section_2_without_requires_grad():
    x = tg.tensor(2.0)
    y = 2 * x**2 + 1
    assert str(y) == "tensor(9.)"
    assert y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        y.backward()


def test_section_3_two_layers():
    x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    y = 2 * x + 1
    z = y**2
    out = z.mean()
    assert str(y) == "tensor([[ 3.,  5.,  7.],\n        [ 9., 11., 13.]], grad_fn=<AddBackward0>)"
    assert str(z) == (
        "tensor([[  9.,  25.,  49.],\n        [ 81., 121., 169.]], grad_fn=<PowBackward0>)"
    )
    assert str(out) == "tensor(75.6667, grad_fn=<MeanBackward0>)"
    out.backward()
    assert str(x.grad) == "tensor([[2.0000, 3.3333, 4.6667],\n        [6.0000, 7.3333, 8.6667]])"


def test_section_4_vector_output():
    a = tg.tensor([2.0, 3.0], requires_grad=True)
    b = tg.tensor([6.0, 4.0], requires_grad=True)
    Q = 3 * a**3 - b**2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        Q.backward()
    Q.backward(gradient=tg.tensor([1.0, 1.0]))
    assert str(9 * a**2 == a.grad) == "tensor([True, True])"
    assert str(-2 * b == b.grad) == "tensor([True, True])"


def test_section_4_second_example():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = tg.tensor([3.0, 4.0], requires_grad=True)
    z = 6 * x**2 - 2 * y**3
    assert (6 * x).grad_fn.name() == "MulBackward0"
    assert str(6 * x) == "tensor([ 6., 12.], grad_fn=<MulBackward0>)"
    z.backward(gradient=tg.ones_like(z))
    assert str(x.grad == 12 * x) == "tensor([True, True])"
    assert str(y.grad == -6 * y**2) == "tensor([True, True])"


def test_section_7_grad_equals_backward():
    data = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    x = tg.tensor(data, requires_grad=True)
    ((2 * x + 1) ** 2).mean().backward()
    g = tg.grad(lambda x: ((2 * x + 1) ** 2).mean())(tg.tensor(data))
    assert str(g) == str(x.grad)


def test_example_script_prints_the_walkthrough(capsys):
    runpy.run_path(str(ROOT / "examples" / "seed_walkthrough.py"), run_name="__main__")
    out = capsys.readouterr().out
    for expected in [
        "tensor(2., requires_grad=True)",
        "tensor(9., grad_fn=<AddBackward0>)",
        "tensor(8.)",
        "tensor(75.6667, grad_fn=<MeanBackward0>)",
        "tensor([[2.0000, 3.3333, 4.6667],\n        [6.0000, 7.3333, 8.6667]])",
        "tensor([True, True])",
        "element 0 of tensors does not require grad and does not have a grad_fn",
        "grad can be implicitly created only for scalar outputs",
        # 5: one ResNet-18 step
        "# parameters with a .grad\n62 of 62",
        "# optim.step() changed conv1.weight\nTrue",
        # 6: frozen body, new head: only the head has .grad, changes, and runs backward nodes
        "# parameters with a .grad\n['fc.weight', 'fc.bias']",
        "# optimizer.step() left the frozen layers unchanged\nTrue",
        "# optimizer.step() changed the head\nTrue",
        # 7: compiled
        "# tg.grad(f)(x) equals .backward()'s x.grad\nTrue",
    ]:
        assert expected in out
    nodes = out.split("whole network vs frozen body + new head\n")[1].split("\n")[0]
    full, frozen = (int(n) for n in nodes.split(" vs "))
    assert frozen < 10 < 300 < full  # no backward work for the frozen layers
    losses = [line.split() for line in out.splitlines() if line.startswith("loss: compiled")]
    assert len(losses) == 3
    for _, _, compiled, _, eager in losses:
        assert float(compiled) == pytest.approx(float(eager), rel=1e-5)
    assert "'traces': 1" in out and "'eager_calls': 1" in out


def test_example_script_runs_as_a_program():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed_walkthrough.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "tensor(75.6667, grad_fn=<MeanBackward0>)" in done.stdout


def test_section_7_compiled_equals_eager():
    data = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    x = tg.tensor(data, requires_grad=True)
    out = ((2 * x + 1) ** 2).mean()
    out.backward()
    value, g = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()))(tg.tensor(data))
    assert str(value) == "tensor(75.6667)"
    assert str(g) == str(x.grad)


def test_section_7_jitted_training_step_equals_eager_step():
    def make():
        return tg.tensor([0.5, -0.5, 0.0], requires_grad=True)

    data = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    target = tg.tensor([1.0, 2.0, 3.0])

    def step(w):
        loss = ((data @ w - target) ** 2).mean()
        loss.backward()
        with tg.no_grad():
            w.sub_(0.01 * w.grad)
        w.grad = None
        return loss

    w_eager, w_jit = make(), make()
    jitted = tg.jit(lambda: step(w_jit))
    for _ in range(5):
        assert step(w_eager).item() == pytest.approx(jitted().item(), rel=1e-6)
    assert w_jit.tolist() == pytest.approx(w_eager.tolist(), rel=1e-6)
    assert jitted.stats["traces"] == 1
