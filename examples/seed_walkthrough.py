"""The seed walkthrough (shared/SEEDS.md): PyTorch's autograd tutorial, with `torch` replaced by
`tracegrad as tg`, printing what PyTorch prints.

Run: python examples/seed_walkthrough.py
"""

import tracegrad as tg


def section(title: str) -> None:
    print()
    print(f"== {title} ==")


def show(label: str, value: object) -> None:
    """Print as the tutorial does: the expression as a comment, then print(value)."""
    print(f"# {label}")
    print(value)


def one_element() -> None:
    section("2. One element: y = 2*x**2 + 1")
    x = tg.tensor(2.0, requires_grad=True)
    y = 2 * x**2 + 1
    show("x", x)
    show("y", y)
    show("x.grad  (before backward)", x.grad)
    y.backward()
    show("x.grad  (dy/dx = 4x = 8)", x.grad)

    x = tg.tensor(2.0)
    y = 2 * x**2 + 1
    show("y, without requires_grad", y)
    try:
        y.backward()
    except RuntimeError as e:
        show("y.backward() raises RuntimeError", e)


def two_layers() -> None:
    section("3. Several elements, two 'layers'")
    x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    y = 2 * x + 1
    z = y**2
    out = z.mean()
    show("y", y)
    show("z", z)
    show("out", out)
    out.backward()
    show("x.grad", x.grad)
    print("(each entry is d(out)/dx = 2*(2x+1)*2/6)")


def vector_output() -> None:
    section("4. A vector output needs a `gradient`")
    a = tg.tensor([2.0, 3.0], requires_grad=True)
    b = tg.tensor([6.0, 4.0], requires_grad=True)
    Q = 3 * a**3 - b**2
    show("Q", Q)
    try:
        Q.backward()
    except RuntimeError as e:
        show("Q.backward() raises RuntimeError", e)
    Q.backward(gradient=tg.tensor([1.0, 1.0]))
    show("9*a**2 == a.grad", 9 * a**2 == a.grad)
    show("-2*b == b.grad", -2 * b == b.grad)

    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = tg.tensor([3.0, 4.0], requires_grad=True)
    z = 6 * x**2 - 2 * y**3
    show("z = 6*x**2 - 2*y**3", z)
    z.backward(gradient=tg.ones_like(z))
    show("x.grad == 12*x", x.grad == 12 * x)
    show("y.grad == -6*y**2", y.grad == -6 * y**2)
    show("grad_fn after a multiplication", 6 * x)


def functional() -> None:
    section("7 (part). The same gradients, functionally and compiled")
    x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])

    def f(x):
        return ((2 * x + 1) ** 2).mean()

    show("tg.grad(f)(x)", tg.grad(f)(x))
    value_and_grad = tg.jit(tg.value_and_grad(f))
    value, grad = value_and_grad(x)
    show("tg.jit(tg.value_and_grad(f))(x)", (value, grad))
    print("# the traced tape it runs (forward, then the adjoint equations)")
    print(value_and_grad.tape(x))

    # a jitted training step that calls loss.backward() and updates a captured weight
    w = tg.tensor([0.5, -0.5, 0.0], requires_grad=True)
    data = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    target = tg.tensor([1.0, 2.0, 3.0])

    @tg.jit
    def step(data, target):
        loss = ((data @ w - target) ** 2).mean()
        loss.backward()
        with tg.no_grad():
            w.sub_(0.01 * w.grad)
        w.grad = None
        return loss

    losses = [step(data, target).item() for _ in range(5)]
    print("# five jitted SGD steps: the loss falls, and the step was traced once")
    print([round(v, 4) for v in losses], step.stats["traces"])


if __name__ == "__main__":
    one_element()
    two_layers()
    vector_output()
    functional()
