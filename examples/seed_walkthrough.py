"""The seed walkthrough (shared/SEEDS.md): PyTorch's autograd tutorial, with `torch` replaced by
`tracegrad as tg`, printing what PyTorch prints: sections 2-4 (autograd), 5 (a ResNet-18
training step), 6 (freezing and a new head), 7 (the same under tg.jit, and tg.grad).

Run: python examples/seed_walkthrough.py
"""

import copy
import time

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
    section("7. (continued) The same gradients functionally, and a jitted step on a small model")
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


def count_backward_nodes(t: tg.Tensor) -> int:
    """How many backward nodes `t.backward()` would run (the graph behind t.grad_fn)."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        todo.extend(n for n, _ in node.next_functions)
    return len(seen)


def training_step() -> None:
    section("5. One training step of an image classifier")
    tg.manual_seed(0)
    model = tg.models.resnet18()
    data = tg.rand(1, 3, 64, 64)
    labels = tg.rand(1, 1000)
    prediction = model(data)  # forward pass
    loss = (prediction - labels).sum()
    loss.backward()  # backward pass
    optim = tg.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    before = model.conv1.weight.detach().clone()
    optim.step()  # gradient descent
    show("prediction.shape", prediction.shape)
    show("loss", loss)
    with_grad = sum(p.grad is not None for p in model.parameters())
    show("parameters with a .grad", f"{with_grad} of {len(list(model.parameters()))}")
    show("optim.step() changed conv1.weight", not tg.equal(before, model.conv1.weight))


def fine_tuning() -> None:
    section("6. Freezing a pretrained network and fine-tuning a new head")
    tg.manual_seed(0)
    model = tg.models.resnet18()
    data, labels = tg.rand(1, 3, 64, 64), tg.rand(1, 1000)
    full_nodes = count_backward_nodes((model(data) - labels).sum())
    for param in model.parameters():
        param.requires_grad = False  # frozen: no gradients, no optimizer updates
    model.fc = tg.nn.Linear(512, 10)  # the new classifier head is trainable
    optimizer = tg.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    head = model.fc.weight.detach().clone()
    loss = (model(data) - tg.rand(1, 10)).sum()
    show(
        "backward nodes: whole network vs frozen body + new head",
        f"{full_nodes} vs {count_backward_nodes(loss)}",
    )
    loss.backward()
    optimizer.step()
    have = [n for n, p in model.named_parameters() if p.grad is not None]
    show("parameters with a .grad", have)
    unchanged = all(
        tg.equal(v, model.state_dict()[k])
        for k, v in frozen.items()
        if "running" not in k and "num_batches" not in k
    )
    show("optimizer.step() left the frozen layers unchanged", unchanged)
    show("optimizer.step() changed the head", not tg.equal(head, model.fc.weight))


def compiled_fine_tuning() -> None:
    section("7. The same, compiled")
    tg.manual_seed(0)
    model = tg.models.resnet18()
    for param in model.parameters():
        param.requires_grad = False
    model.fc = tg.nn.Linear(512, 10)
    optimizer = tg.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    eager_model = copy.deepcopy(model)
    eager_optimizer = tg.optim.SGD(eager_model.parameters(), lr=1e-2, momentum=0.9)

    def train_step(model, optimizer, data, target):
        optimizer.zero_grad()
        loss = tg.nn.functional.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()
        return loss

    step = tg.jit(lambda data, target: train_step(model, optimizer, data, target))
    batches = [(tg.rand(2, 3, 64, 64), tg.randint(0, 10, (2,))) for _ in range(3)]
    start = time.perf_counter()
    for data, target in batches:
        compiled = step(data, target)
        eager = train_step(eager_model, eager_optimizer, data, target)
        print(f"loss: compiled {compiled.item():.6f}  eager {eager.item():.6f}")
    print(
        f"# three jitted steps in {time.perf_counter() - start:.1f} s (the first runs eagerly "
        "to create the momentum buffers, the second traces and compiles, the third reuses)"
    )
    show("step.stats", step.stats)
    with tg.no_grad():
        diff = (model.fc.weight - eager_model.fc.weight).abs().max()
    show("largest difference, compiled vs eager head weights", diff)
    x = tg.rand(1, 3, 64, 64)
    x_grad = tg.grad(lambda d: model(d).sum())(x)
    xr = x.clone().requires_grad_(True)
    model(xr).sum().backward()
    show("tg.grad(f)(x) equals .backward()'s x.grad", tg.allclose(x_grad, xr.grad))


if __name__ == "__main__":
    one_element()
    two_layers()
    vector_output()
    training_step()
    fine_tuning()
    compiled_fine_tuning()
    functional()
