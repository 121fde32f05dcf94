"""DistributedDataParallel: every rank holds the whole model, runs its share of the batch, and
the gradients are averaged across ranks during the backward, as PyTorch's DDP does.

* **Construction**: every rank's parameters must have the same names, shapes and dtypes (checked
  with one allgather of their descriptions; a mismatch is an error on every rank naming the
  first difference), then rank 0's parameters and buffers are copied to all ranks.
* **Buckets**: the parameters that require grad, in reverse registration order (the order their
  gradients tend to become ready in a backward), grouped by dtype into buckets of at most
  `bucket_cap_mb` (a first bucket of 1 MB, PyTorch's `_DEFAULT_FIRST_BUCKET_BYTES`, so that
  communication starts early).
* **Overlap**: a post-accumulate-grad hook on each parameter notes its gradient as ready; when a
  bucket's last gradient is ready its gradients are copied into the bucket's flat buffer and the
  all-reduce (a sum) is started on the communication thread (`distributed.collectives.submit`:
  mpi4py releases the GIL, so the rest of the backward runs meanwhile). Buckets start in bucket
  order on every rank (a bucket ready early waits for the ones before it), so the ranks'
  collectives always match. When the backward's sweep is over (`engine.queue_callback`) every
  all-reduce is waited for and the averages are written into `.grad`: `backward()` returns with
  gradients that are already averaged, before anything can read them.
* **`no_sync()`**: backward calls inside it only accumulate locally; the first backward after
  it averages the accumulated gradients.
* **Unused parameters**: a parameter that got no gradient in a backward leaves its bucket
  incomplete; that is an error naming the parameters unless `find_unused_parameters=True`, where
  their gradients count as zero (PyTorch's flag and its default).
* **Buffers** (BatchNorm's running statistics) are broadcast from rank 0 before each forward
  (`broadcast_buffers=True`, PyTorch's default).
* **Under `tg.jit`**: a jitted training step traces the backward too; the hooks then record
  each bucket's all-reduce as an `all_reduce_start` op (a Python step placed right after the
  kernel that makes the bucket's last gradient: it starts the all-reduce on the communication
  thread and the program goes on) and, at the end of the backward, an `all_reduce_wait` per
  bucket (ordered after the last bucket's start); the averages are state writes of the
  `.grad`s. `DistributedDataParallel(tg.jit(model))` works as well: the compiled backward's node
  accumulates into the parameters and the hooks run eagerly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...autograd import engine
from ...tensor import Tensor, tracing
from ..module import Module

FIRST_BUCKET_BYTES = 1024 * 1024


class _Bucket:
    __slots__ = ("params", "offsets", "dtype", "flat", "future")

    def __init__(self, params: list, dtype: np.dtype) -> None:
        self.params = params
        self.dtype = dtype
        self.offsets = []
        n = 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.flat = np.empty(n, dtype=dtype)
        self.future = None


def _host(t: Any) -> np.ndarray:
    """A tensor's values as a numpy array (a copy from the GPU for a CUDA tensor)."""
    return t._data if type(t._data) is np.ndarray else t.cpu()._data


def _store(t: Any, values: np.ndarray) -> None:
    """Write `values` into `t` in place, outside autograd (a parameter, buffer or `.grad`)."""
    if type(t._data) is np.ndarray and t._data.flags.writeable:
        t._data[...] = values
        t._version[0] += 1
        return
    from ...autograd.grad_mode import no_grad

    with no_grad():  # on a GPU, or read-only memory: an ordinary in-place copy
        t.copy_(Tensor._wrap(np.array(values)).to(t.device))


class _Done:
    """The future of an all-reduce that ran on the calling thread."""

    def result(self) -> None:
        return None


class _Progress:
    """Where one backward is: started, which gradients are ready per bucket, the next bucket to
    start, and whether the backward is being traced (tg.jit)."""

    __slots__ = ("active", "ready", "next", "traced", "started", "generation")

    def __init__(self) -> None:
        self.generation = 0  # engine.generation when this backward began
        self.started: Any = None  # the last traced all_reduce_start's result
        self.active = False
        self.ready: list = []
        self.next = 0
        self.traced = False


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training over the default process group.

    >>> # mpiexec -n 2 python train.py
    >>> # dist.init_process_group("mpi"); model = DistributedDataParallel(Net())
    """

    def __init__(
        self,
        module: Module,
        device_ids: Any = None,
        output_device: Any = None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group: Any = None,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
        check_reduction: bool = False,
        gradient_as_bucket_view: bool = False,
        static_graph: bool = False,
        **kwargs: Any,
    ) -> None:
        from ...distributed.process_group import _require, group

        super().__init__()
        if kwargs:
            raise TypeError(
                "DistributedDataParallel: unsupported arguments " + ", ".join(sorted(kwargs))
            )
        if dim != 0:
            raise ValueError("DistributedDataParallel: only dim=0 (the batch dimension)")
        if process_group is not None:
            raise NotImplementedError(
                "DistributedDataParallel: only the default process group (process_group=None); "
                "tracegrad has no dist.new_group yet"
            )
        # device_ids/output_device (the module's device is used), check_reduction,
        # gradient_as_bucket_view and static_graph (PyTorch's memory and speed hints) are
        # accepted and change nothing here
        _require("DistributedDataParallel")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        cap = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if cap <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be > 0, got {cap}")
        self.bucket_cap_mb = cap
        object.__setattr__(self, "_group", group)
        self._check_same_model()
        self._broadcast_state(initial=True)
        params = []
        seen: set[int] = set()
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        object.__setattr__(self, "_buckets", self._make_buckets(params, cap))
        where = {}
        for b, bucket in enumerate(self._buckets):
            for p in bucket.params:
                where[id(p)] = b
        names = {id(p): n for n, p in module.named_parameters()}
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_names", names)
        # whether backward all-reduces (no_sync turns it off): a plain attribute, so a jitted
        # step traced with it on retraces inside no_sync (the module guard sees the change)
        self._sync = True
        # one backward's progress (not module state: a trace must not see it as an assignment)
        object.__setattr__(self, "_run", _Progress())
        object.__setattr__(
            self,
            "_handles",
            [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params],
        )

    # ---------------------------------------------------------------------------- set-up

    def _check_same_model(self) -> None:
        comm = self._group.comm
        mine = [(n, tuple(p.shape), str(p.dtype)) for n, p in self.module.named_parameters()]
        everyone = comm.allgather(mine)
        for rank, theirs in enumerate(everyone):
            if theirs == mine:
                continue
            for i in range(max(len(mine), len(theirs))):
                a = mine[i] if i < len(mine) else None
                b = theirs[i] if i < len(theirs) else None
                if a != b:
                    raise RuntimeError(
                        f"DistributedDataParallel: rank {comm.rank} and rank {rank} have "
                        f"different models: parameter {i} is {a} here and {b} there (name, "
                        "shape, dtype). Build the same model on every rank."
                    )

    def _broadcast_state(self, initial: bool) -> None:
        """Rank 0's buffers (and at construction its parameters) to every rank, one Bcast per
        dtype. Inside a trace, as `broadcast` ops and in-place copies (state writes)."""
        tensors = list(self.module.buffers())
        if initial:
            tensors = list(self.module.parameters()) + tensors
        if not tensors or self._group.comm.size == 1:
            return
        tracer = tracing.tracer
        if tracer is not None:
            from ...autograd.grad_mode import no_grad
            from ...distributed.collectives import broadcast_op

            with no_grad():
                for t in tensors:
                    t.copy_(broadcast_op(t, src=0))
            return
        by_dtype: dict[Any, list] = {}
        for t in tensors:
            by_dtype.setdefault(np.dtype(t.dtype), []).append(t)
        for dtype, ts in by_dtype.items():
            # (a CUDA tensor goes through the host)
            flat = np.concatenate([_host(t).reshape(-1) for t in ts]).astype(dtype, copy=False)
            self._group.comm.Bcast(flat, root=0)
            off = 0
            for t in ts:
                n = t.numel()
                _store(t, flat[off : off + n].reshape(t.shape))
                off += n

    @staticmethod
    def _make_buckets(params: list, cap_mb: float) -> list:
        buckets: list = []
        open_: dict[Any, tuple[list, int]] = {}
        limit = min(FIRST_BUCKET_BYTES, int(cap_mb * 1024 * 1024))
        for p in reversed(params):
            dtype = np.dtype(p.dtype)
            members, size = open_.get(dtype, ([], 0))
            nbytes = p.numel() * dtype.itemsize
            if members and size + nbytes > limit:
                buckets.append(_Bucket(members, dtype))
                limit = int(cap_mb * 1024 * 1024)
                members, size = [], 0
            members.append(p)
            open_[dtype] = (members, size + nbytes)
        for dtype, (members, _) in open_.items():
            if members:
                buckets.append(_Bucket(members, dtype))
        return buckets

    # ---------------------------------------------------------------------------- forward

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.broadcast_buffers and self.module.training:
            self._broadcast_state(initial=False)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward calls inside accumulate gradients locally, without communication; the first
        backward after the block averages the accumulated gradients."""
        old = self._sync
        self._sync = False
        try:
            yield
        finally:
            self._sync = old

    # ---------------------------------------------------------------------------- backward

    def _grad_ready(self, p: Any) -> None:
        if not self._sync:
            return
        run = self._run
        if run.active and run.generation != engine.generation[0]:
            # an earlier backward raised before it finished: drop what it had started
            for bucket in self._buckets:
                if bucket.future is not None and not run.traced:
                    bucket.future.result()
                bucket.future = None
            run.active = False
        if not run.active:
            run.active = True
            run.generation = engine.generation[0]
            run.ready = [set() for _ in self._buckets]
            run.next = 0
            run.started = None
            run.traced = tracing.tracer is not None
            engine.queue_callback(self._finish)
        run.ready[self._where[id(p)]].add(id(p))
        self._launch_ready()

    def _launch_ready(self, force: bool = False) -> None:
        run = self._run
        while run.next < len(self._buckets):
            bucket = self._buckets[run.next]
            if not force and len(run.ready[run.next]) < len(bucket.params):
                return
            self._launch(bucket)
            run.next += 1

    def _launch(self, bucket: _Bucket) -> None:
        if self._run.traced:
            bucket.future = self._traced_all_reduce(bucket)
            return
        from ...distributed.process_group import submit

        flat = bucket.flat
        for p, off in zip(bucket.params, bucket.offsets):
            n = p.numel()
            g = p.grad
            flat[off : off + n] = 0 if g is None else _host(g).reshape(-1)
        comm, mpi = self._group.ddp_comm, self._group.mpi
        if self._group.threaded:
            bucket.future = submit(comm.Allreduce, mpi.IN_PLACE, flat, mpi.SUM)
        else:
            comm.Allreduce(mpi.IN_PLACE, flat, mpi.SUM)
            bucket.future = _Done()

    def _traced_all_reduce(self, bucket: _Bucket) -> Any:
        from ... import functions as F
        from ...autograd.grad_mode import no_grad
        from ...distributed.collectives import all_reduce_start_op

        with no_grad():
            parts = []
            for p in bucket.params:
                g = p.grad
                parts.append(
                    g.reshape(-1)
                    if g is not None
                    else Tensor._wrap(np.zeros(p.numel(), dtype=bucket.dtype))
                )
            flat = F.cat(parts) if len(parts) > 1 else parts[0]
            # after the previous bucket's start: the same order on every rank
            before = self._run.started
            started = (
                all_reduce_start_op(flat, before)
                if before is not None
                else (all_reduce_start_op(flat))
            )
            self._run.started = started
            return started

    def _finish(self) -> None:
        run = self._run
        run.active = False
        missing = [
            self._names.get(id(p), "?")
            for b, bucket in enumerate(self._buckets)
            for p in bucket.params
            if id(p) not in run.ready[b]
        ]
        if missing and not self.find_unused_parameters:
            for bucket in self._buckets[: run.next]:
                if bucket.future is not None and not run.traced:
                    bucket.future.result()
                bucket.future = None
            raise RuntimeError(
                "DistributedDataParallel: these parameters received no gradient in this "
                f"backward: {', '.join(missing)}. Every rank must all-reduce every parameter's "
                "gradient: pass find_unused_parameters=True (their gradients then count as "
                "zero), or freeze them (requires_grad_(False)) before wrapping the model."
            )
        self._launch_ready(force=True)
        size = self._group.comm.size
        last, run.started = run.started, None
        for bucket in self._buckets:
            if run.traced:
                self._write_traced(bucket, last)
                continue
            bucket.future.result()
            bucket.future = None
            flat = bucket.flat
            if bucket.dtype.kind == "f":
                np.divide(flat, size, out=flat)
            for p, off in zip(bucket.params, bucket.offsets):
                n = p.numel()
                avg = flat[off : off + n].reshape(p.shape)
                if p.grad is None:
                    p.grad = Tensor._wrap(avg.copy()).to(p.device)
                else:
                    _store(p.grad, avg)

    def _write_traced(self, bucket: _Bucket, last: Any) -> None:
        from ...autograd.grad_mode import no_grad
        from ...distributed.collectives import all_reduce_wait_op

        started, bucket.future = bucket.future, None
        with no_grad():
            op = "avg" if bucket.dtype.kind == "f" else "sum"
            flat = all_reduce_wait_op(started, last, op=op)
            for p, off in zip(bucket.params, bucket.offsets):
                n = p.numel()
                # the averaged gradient becomes the traced value of `.grad` (a state write: the
                # call stores it into the `.grad` it finds), read from the flat buffer as a view
                # -- no in-place copy (a setitem step per parameter)
                p.grad = flat[off : off + n].reshape(tuple(p.shape))

    def extra_repr(self) -> str:
        return f"buckets={len(self._buckets)}, bucket_cap_mb={self.bucket_cap_mb:g}"
