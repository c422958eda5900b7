"""sgdstab.torch: the stability of SGD at a PyTorch model's minimum.

``jacobian(model, inputs)`` and ``gram(model, inputs)`` give the per-sample
Jacobian and the NTK Gram of an ``nn.Module`` in the library's layout;
``analyze(model, inputs, targets, ...)`` checks that the parameters are an
interpolating minimum and returns eta*(B) in the learning-rate units of the
loss you train with. Where J or K would not fit, ``TorchModel`` gives their
products (Jacobian-vector and vector-Jacobian products, never J) and
``band(model, inputs, targets, ...)`` a band for eta*(B) from them (upper side
certified, lower side certified or probabilistic, as each point says);
``stability(model, inputs, targets, ...)`` runs the exact engine where it
fits (rank and memory budget) and the band otherwise, and says which.

Conventions:

* Outputs: ``model(inputs)`` of shape (n, C) (or (n,) for C = 1); rows of J
  are sample-major (row ``i*C + k`` is ``d f_k(x_i) / d theta``) and columns
  follow ``model.parameters()`` (those with ``requires_grad``), each
  flattened in PyTorch's (row-major) order.
* Precision: computed in float64 on a copy of the model (``dtype``), so a
  float32 model gives a float64 Jacobian of the same function.
* The model is evaluated as it is: call ``model.eval()`` first if it has
  dropout or batch norm.
* Loss: the library's is L = (1/n) sum_i 1/2 |f(x_i) - y_i|^2. PyTorch's
  ``MSELoss(reduction="mean")`` is L_t = (2/C) L, so its learning rates are
  (C/2) times ours: ``analyze(..., loss="mse_mean")`` (the default) reports
  eta* in PyTorch's units, ``loss="sgdstab"`` in ours.
"""

import copy
import math
import warnings

import numpy as _np
import torch as _torch

from . import _core

__all__ = ["jacobian", "gram", "measures", "analyze", "covariance", "band", "stability", "TorchModel", "LOSSES"]

#: Supported loss conventions and the factor eta_user = factor(C) * eta_sgdstab.
LOSSES = {
    "mse_mean": lambda c: 0.5 * c,  # torch.nn.MSELoss(reduction="mean"): (1/(nC)) sum |f - y|^2
    "sgdstab": lambda c: 1.0,  # (1/n) sum 1/2 |f - y|^2
}


def _functional():
    try:  # PyTorch >= 2.0
        from torch.func import functional_call, jacrev, vmap
    except ImportError:  # PyTorch 1.13 (functorch)
        from functorch import jacrev, vmap
        from torch.nn.utils.stateless import functional_call
    return functional_call, jacrev, vmap


def _products():
    try:  # PyTorch >= 2.0
        from torch.func import jvp, vjp
    except ImportError:  # PyTorch 1.13 (functorch)
        from functorch import jvp, vjp
    return jvp, vjp


def _prepare(model, inputs, dtype):
    if not isinstance(model, _torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, _torch.Tensor):
        inputs = _torch.as_tensor(_np.asarray(inputs))
    if inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs: expected a batch of n >= 1 samples (first dimension), got shape {tuple(inputs.shape)}")
    work = copy.deepcopy(model).to(dtype=dtype)
    x = inputs.detach().to(dtype=dtype) if inputs.is_floating_point() else inputs.detach()
    x = x.to(next(work.parameters()).device) if any(True for _ in work.parameters()) else x
    names = [name for name, p in work.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("model: no parameter requires grad (nothing to differentiate)")
    return work, x, names


def _outputs_count(work, x):
    with _torch.no_grad():
        out = work(x[:1])
    if out.dim() == 1:
        return 1
    if out.dim() != 2:
        raise ValueError(f"model(inputs) must have shape (n, C) or (n,), got {tuple(out.shape)} for one sample")
    return out.shape[1]


def _per_sample(work, x, names, only=None, chunk=None):
    """Per-sample Jacobian blocks {name: (m, C, *shape)} over sample chunks (a generator)."""
    functional_call, jacrev, vmap = _functional()
    params = {n: p.detach() for n, p in work.named_parameters()}
    wrt = list(only) if only is not None else names

    def f(sub, xi):
        full = dict(params)
        full.update(sub)
        out = functional_call(work, full, (xi.unsqueeze(0),)).squeeze(0)
        return out.reshape(-1)

    sub = {n: params[n] for n in wrt}
    n = x.shape[0]
    step = chunk or n
    for start in range(0, n, step):
        xs = x[start:start + step]
        try:
            block = vmap(jacrev(f), in_dims=(None, 0))(sub, xs)
        except Exception as e:  # an op vmap does not support: the plain loop
            warnings.warn(f"sgdstab.torch: vectorized Jacobian failed ({e}); using a per-sample loop")
            block = _loop_jacobian(work, xs, wrt)
        yield start, block


def _loop_jacobian(work, xs, wrt):
    params = dict(work.named_parameters())
    rows = {n: [] for n in wrt}
    for i in range(xs.shape[0]):
        out = work(xs[i:i + 1]).reshape(-1)
        per_out = {n: [] for n in wrt}
        for k in range(out.shape[0]):
            grads = _torch.autograd.grad(out[k], [params[n] for n in wrt], retain_graph=True, allow_unused=True)
            for n, g in zip(wrt, grads):
                per_out[n].append(_torch.zeros_like(params[n]) if g is None else g)
        for n in wrt:
            rows[n].append(_torch.stack(per_out[n]))
    return {n: _torch.stack(rows[n]) for n in wrt}


def jacobian(model, inputs, *, dtype=_torch.float64, chunk=None):
    """The (n*C) x p per-sample Jacobian of ``model`` at ``inputs``, as a float64 NumPy array.

    Row ``i*C + k`` is the gradient of output k on sample i with respect to
    every parameter that requires grad, in ``model.parameters()`` order, each
    flattened (row-major). ``chunk``: samples per vectorized pass (default all).
    """
    work, x, names = _prepare(model, inputs, dtype)
    c = _outputs_count(work, x)
    n = x.shape[0]
    sizes = [dict(work.named_parameters())[nm].numel() for nm in names]
    p = sum(sizes)
    _check_bytes(8.0 * n * c * p, f"the {n * c} x {p} Jacobian")
    out = _np.empty((n * c, p))
    for start, block in _per_sample(work, x, names, chunk=chunk):
        m = next(iter(block.values())).shape[0]
        cols = [block[nm].reshape(m * c, -1) for nm in names]
        out[start * c:(start + m) * c] = _torch.cat(cols, dim=1).detach().cpu().double().numpy()
    return out


def gram(model, inputs, *, dtype=_torch.float64, max_block_bytes=1 << 28):
    """The NTK Gram K = J J^T ((n*C) x (n*C), float64 NumPy) without forming J.

    A network whose trainable parameters are all nn.Linear weights and biases
    (each layer run once per forward, one row per sample, samples not
    interacting) takes the layer-wise path: K = sum over layers of
    (D D^T) * kron(A A^T + 1, ones(C, C)), from C backward passes per chunk
    of samples (``_linear_gram``; checked against the Jacobian rows of the
    first and last samples). Any other model: K is accumulated over the
    parameter tensors, K = sum_t J_t J_t^T with J_t
    the Jacobian with respect to tensor t alone, so memory is n*C times the
    largest tensor, not n*C*p. A tensor whose block exceeds max_block_bytes is
    done in sample chunks (recomputing its Jacobian per pair of chunks).
    """
    work, x, names = _prepare(model, inputs, dtype)
    c = _outputs_count(work, x)
    n = x.shape[0]
    _check_bytes(8.0 * (n * c) ** 2, f"the {n * c} x {n * c} Gram")
    fast = _linear_gram(work, x, names, c)
    if fast is not None:
        return fast
    params = dict(work.named_parameters())
    k = _torch.zeros((n * c, n * c), dtype=_torch.float64)
    for nm in names:
        size = params[nm].numel()
        per_sample = 8.0 * c * size
        if per_sample * n <= max_block_bytes:
            (_, block), = _per_sample(work, x, names, only=[nm])
            jt = block[nm].reshape(n * c, size).double().cpu()
            k += jt @ jt.T
        else:
            m = max(1, int(max_block_bytes // (2 * per_sample)))
            for sa, ba in _per_sample(work, x, names, only=[nm], chunk=m):
                ja = ba[nm].reshape(-1, size).double().cpu()
                for sb, bb in _per_sample(work, x, names, only=[nm], chunk=m):
                    if sb < sa:
                        continue
                    jb = bb[nm].reshape(-1, size).double().cpu()
                    blk = ja @ jb.T
                    k[sa * c:sa * c + ja.shape[0], sb * c:sb * c + jb.shape[0]] += blk
                    if sb != sa:
                        k[sb * c:sb * c + jb.shape[0], sa * c:sa * c + ja.shape[0]] += blk.T
    return k.numpy()


def _available_bytes():
    """The memory available to a new allocation, as the C++ library's budget
    checks read it (``sgdstab.available_memory_bytes``: MemAvailable, the
    memory cgroup's room, ulimit -v's), or None; free pages where none can
    be read."""
    avail = _core.available_memory_bytes()
    if avail is not None:
        return avail
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _out_of_memory(e):
    """Whether an exception is a failed allocation: MemoryError (the
    library's resource_error and std::bad_alloc), or PyTorch's own
    (torch.cuda.OutOfMemoryError; a RuntimeError "can't allocate memory" on
    the CPU)."""
    if isinstance(e, MemoryError):
        return True
    oom = getattr(getattr(_torch, "cuda", None), "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def _check_bytes(nbytes, what):
    avail = _available_bytes()
    if avail is None:
        return
    if nbytes > avail:
        raise MemoryError(f"sgdstab.torch: {what} needs {nbytes / 2**30:.1f} GiB, more than the "
                          f"{avail / 2**30:.1f} GiB available")


class Report:
    """What ``analyze`` found: eta*(B) in the units of ``loss``, and the verdict at (lr, batch)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def to_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "geometry"}

    def __repr__(self):
        pts = ", ".join(f"B={p['batch']}: {p['eta_star']:.6g}" for p in self.points)
        return f"<sgdstab.torch.Report loss={self.loss} eta_star {{{pts}}}>"


class CovarianceReport(Report):
    """What ``covariance`` found: the stationary fluctuations of SGD around a non-interpolating minimum."""

    def __repr__(self):
        return (f"<sgdstab.torch.CovarianceReport trace={self.trace:.6g} excess_loss={self.excess_loss:.6g} "
                f"rho={self.rho:.6g}>")


def _sgd_settings(optimizer):
    """lr, momentum, nesterov and weight_decay of a torch.optim.SGD, as analyze's keywords."""
    if isinstance(optimizer, _torch.optim.Optimizer) and not isinstance(optimizer, _torch.optim.SGD):
        raise NotImplementedError(f"optimizer: {type(optimizer).__name__} is not analyzed yet; torch.optim.SGD, "
                                  "Adam, AdamW and RMSprop are (theory/adaptive.md)")
    if not isinstance(optimizer, _torch.optim.SGD):
        raise TypeError(f"optimizer: expected a torch.optim.SGD, Adam, AdamW or RMSprop, got {type(optimizer).__name__}")
    groups = optimizer.param_groups
    keys = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    first = {k: groups[0].get(k) for k in keys}
    if any({k: g.get(k) for k in keys} != first for g in groups[1:]):
        raise ValueError("optimizer: its parameter groups differ in lr, momentum, dampening, nesterov or "
                         "weight_decay; one set of them is analyzed")
    if first["dampening"]:
        raise ValueError(f"optimizer: dampening={first['dampening']} is not analyzed (theory/momentum.md: "
                         "PyTorch's SGD with dampening 0)")
    if groups[0].get("maximize"):
        raise ValueError("optimizer: maximize=True ascends the loss; there is no minimum to be stable at")
    lr = float(first["lr"])
    return {"lr": lr, "momentum": float(first["momentum"]) if first["momentum"] else None,
            "nesterov": bool(first["nesterov"]), "weight_decay": float(first["weight_decay"]) or None}


def _adaptive_settings(optimizer, model):
    """The frozen-preconditioner model of a torch.optim.Adam, AdamW or RMSprop (theory/adaptive.md):
    {kind, lr (the step's lr with Adam's first bias correction), beta1 (Adam) or momentum (RMSprop),
    preconditioner (P = sqrt(v_hat) + eps in the Jacobian's column order, as NumPy)}."""
    name = type(optimizer).__name__
    if not isinstance(optimizer, (_torch.optim.Adam, _torch.optim.AdamW, _torch.optim.RMSprop)):
        return None
    adam = not isinstance(optimizer, _torch.optim.RMSprop)
    groups = optimizer.param_groups
    keys = (("lr", "betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay") if adam else
            ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"))
    first = {k: groups[0].get(k) for k in keys}
    if any({k: g.get(k) for k in keys} != first for g in groups[1:]):
        raise ValueError(f"optimizer: its parameter groups differ in {', '.join(keys)}; one set of them is analyzed")
    if groups[0].get("maximize"):
        raise ValueError("optimizer: maximize=True ascends the loss; there is no minimum to be stable at")
    # AdamW (and Adam(decoupled_weight_decay=True) in newer torch) shrinks theta by 1 - lr wd before the step:
    # analyzed (theory/adaptive.md section 5). Adam's and RMSprop's own weight_decay is L2 through P^{-1}.
    decoupled = adam and (isinstance(optimizer, _torch.optim.AdamW) or bool(groups[0].get("decoupled_weight_decay")))
    # The L2 decay (g + wd theta before the division by P) is analyzed on the whole parameter space
    # (theory/adaptive.md section 6), without RMSprop's momentum.
    l2 = float(first["weight_decay"]) if first["weight_decay"] and not decoupled else 0.0
    if l2 and not adam and first["momentum"]:
        raise NotImplementedError(f"optimizer: RMSprop with momentum={first['momentum']} and weight_decay={l2} is "
                                  "not analyzed (RMSprop's L2 decay is, without momentum; so is Adam's)")
    if not adam and first["centered"]:
        raise NotImplementedError("optimizer: RMSprop(centered=True) is not analyzed (its preconditioner subtracts "
                                  "the squared mean gradient)")
    owner = {id(p): g for g in groups for p in g["params"]}
    pre, steps = [], set()
    for pname, prm in model.named_parameters():
        if not prm.requires_grad:
            continue
        if id(prm) not in owner:
            raise ValueError(f"optimizer: parameter {pname!r} requires grad but is in none of its groups")
        st = optimizer.state.get(prm, {})
        key = ("max_exp_avg_sq" if first["amsgrad"] else "exp_avg_sq") if adam else "square_avg"
        if key not in st:
            raise ValueError(f"optimizer: no {key} for parameter {pname!r}: take at least one optimizer step "
                             "first (the preconditioner is read from the optimizer's state)")
        v = st[key].detach().double().cpu().reshape(-1)
        if adam:
            step = float(st["step"]) + 1.0  # the next update's t (torch increments step before it divides)
            steps.add(step)
            v = v / (1.0 - first["betas"][1] ** step)
        pre.append(v.sqrt() + first["eps"])
    if not pre:
        raise ValueError("model: no parameter requires grad (nothing to differentiate)")
    if len(steps) > 1:
        raise ValueError(f"optimizer: its parameters have taken different numbers of steps ({sorted(steps)})")
    out = {"kind": name.lower(), "preconditioner": _torch.cat(pre).numpy(), "l2_weight_decay": l2}
    if adam:
        beta1 = float(first["betas"][0])
        step = steps.pop()
        # torch divides the step by 1 - beta1^t (Adam's first bias correction, t the next update's): the lr that
        # moves theta.
        out.update(lr=float(first["lr"]), beta1=beta1, bias_correction1=1.0 - beta1 ** step,
                   decoupled_weight_decay=float(first["weight_decay"]) if decoupled else 0.0)
    else:
        out.update(lr=float(first["lr"]), momentum=float(first["momentum"]) or None, bias_correction1=1.0)
    return out


def analyze(model, inputs, targets, batches=None, lr=None, batch=None, loss="mse_mean", *,
            sampling="without", momentum=None, nesterov=False, weight_decay=None, optimizer=None,
            residual_tolerance=1e-6, allow_non_minimum=False, use_gram=None, dtype=_torch.float64, radius=True,
            **solver_options):
    """The stability report of SGD at ``model``'s current parameters.

    inputs: the n training inputs; targets: (n, C) or (n,) targets. Checks
    that the model interpolates them (max |f(x_i) - y_i| <= residual_tolerance
    * max(1, max |y|); otherwise ValueError, unless allow_non_minimum=True, in
    which case the report says so and the numbers describe the Gauss-Newton
    part only), builds the geometry (from the Jacobian, or from the Gram when
    J would be large or use_gram=True) and computes eta*(B) for ``batches``
    (default 1, 2, 4, ..., n) with ``sampling``.

    Learning rates are in the units of ``loss``: "mse_mean" (default) is
    torch.nn.MSELoss(reduction="mean"), whose eta* is (C/2) times the
    library's; "sgdstab" is the library's (1/n) sum 1/2 |f - y|^2. With lr and
    batch, the report adds the verdict at that point (rho and stable).
    radius=False leaves rho out: the verdict is then lr <= eta*(batch) (the
    same answer for plain SGD, whose stable learning rates are (0, eta*];
    with momentum or Adam it says whether lr is below the first crossing
    eta*, theory/momentum.md section 5). At a stable point of a large
    network the radius is the costly part: the top eigenvalues of T cluster
    just below 1 (one per small eigenvalue of H), and Lanczos may need
    thousands of applications where eta* needs tens (at full batch without
    weight decay rho is a closed form and cheap).
    momentum=BETA, nesterov=...: torch.optim.SGD(momentum=BETA, nesterov=...)
    (dampening 0; theory/momentum.md); the conversion of lr is the same.
    weight_decay=WD: torch.optim.SGD(lr, weight_decay=WD) (with momentum too:
    the buffer takes grad + WD theta; theory/weight_decay.md, theory/momentum.md
    section 8): the update lr (grad + WD theta) with the loss's
    gradient, i.e. the library's lambda = WD * lr_factor (WD C / 2 for
    "mse_mean"); eta_gd is then that of GD with weight decay. The point is
    the minimum of the loss without the penalty; the penalty's pull on it
    moves the mean, not the threshold.
    optimizer=OPT: a torch.optim.SGD whose lr, momentum, nesterov and
    weight_decay are used (one set for all parameter groups; dampening 0);
    give batch= for the verdict at its lr. Passing any of lr, momentum,
    nesterov or weight_decay as well is an error. A torch.optim.Adam, AdamW
    or RMSprop (RMSprop not centered) is analyzed with its
    second-moment state frozen (theory/adaptive.md): P = sqrt(v_hat) + eps
    from its state (exp_avg_sq / (1 - beta2^t), max_exp_avg_sq with amsgrad,
    RMSprop's square_avg; take at least one step first), the Jacobian
    preconditioned to J P^{-1/2}, Adam solved as heavy-ball at lr (1 - beta1)
    and RMSprop's momentum as heavy-ball; eta* is in the optimizer's lr,
    including Adam's first bias correction 1 - beta1^t at the state's step
    (report's bias_correction1; 1 late in training). lambda_max is then the
    preconditioned sharpness lambda_max(P^{-1} H) in the loss's units.
    AdamW's weight_decay WD (theta <- (1 - lr WD) theta before the step,
    theory/adaptive.md section 5) enters as the library's decoupled decay
    lr_factor * WD; the report's weight_decay is WD, weight_decay_decoupled
    True, and eta_gd the full-batch limit 2 (1 + beta1) / ((1 - beta1)
    lambda_max + (1 + beta1) WD) in the optimizer's lr. Adam's and RMSprop's
    own weight_decay WD (L2: grad + WD theta before the division by P; not
    with RMSprop's momentum) is solved on the whole parameter space
    (sgdstab.adam_l2_curve with the library's decay WD times the loss's
    factor, WD C / 2 for "mse_mean"; theory/adaptive.md section 6: p up to
    a few thousand); the report's weight_decay is WD, eta_gd the
    full-batch limit with P^{-1}(H + WD), and the verdict's rho is that of the
    whole state (sgdstab.adam_l2_radius).

    loss="cross_entropy": torch.nn.CrossEntropyLoss(reduction="mean") on
    logits model(inputs) (C >= 2), targets class indices (n,) or class
    probabilities (n, C). The per-sample curvature S_i = diag(p_i) - p_i
    p_i^T of the softmax enters as J_i -> S_i^{1/2} J_i (theory/
    loss_curvature.md); lr is torch's as it stands (lr_factor 1). There is no
    finite minimum: the report is that of the point given (is_minimum False,
    max_residual = max |p_i - t_i|), the mean-square stability of the
    linearized update there, with the Gauss-Newton Hessian; section 3 of the
    note says what that does and does not promise.

    Returns a Report: samples, outputs, params, rank, loss, lr_factor (eta in
    loss units per library unit), lambda_max and eta_gd (in loss units),
    max_residual, is_minimum, points [{batch, eta_star, eta_star_sgdstab,
    converged, status, matvecs, error_bound; with momentum (not Adam) also
    eta_bracket: the certified [eta_low, eta_high] around eta*}], verdict (or None: {lr, batch, sampling,
    rho (None when the radius did not converge or radius=False), rho_converged, stable,
    eta_star, decided_by ("rho", or "eta_star" when only the threshold
    converged or radius=False: stable iff lr <= eta*), converged}), geometry (the
    sgdstab.Geometry), to_dict().
    """
    ce = loss == "cross_entropy"
    if loss not in LOSSES and not ce:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)} or 'cross_entropy', got {loss!r}")
    adaptive = None
    if optimizer is not None:
        if lr is not None or momentum is not None or nesterov or weight_decay is not None:
            raise ValueError("optimizer= gives lr, momentum, nesterov and weight_decay: do not pass them as well")
        adaptive = _adaptive_settings(optimizer, model)
        settings = adaptive if adaptive is not None else _sgd_settings(optimizer)
        momentum = settings.get("momentum")
        nesterov, weight_decay = settings.get("nesterov", False), settings.get("weight_decay")
        if batch is not None:
            lr = settings["lr"]
    if (lr is None) != (batch is None):
        raise ValueError("give both lr and batch for a verdict, or neither")
    work, x, names = _prepare(model, inputs, dtype)
    if ce:
        n, c, max_res, curvature = _cross_entropy_point(work, x, targets)
        # A minimum only where the model fits probability targets exactly (soft labels; theory/loss_curvature.md
        # section 4). CrossEntropyLoss(mean) is (1/n) sum l_i: the library's units.
        is_min, factor = max_res <= residual_tolerance, 1.0
    else:
        n, c, max_res, is_min = _check_minimum(work, x, targets, residual_tolerance, allow_non_minimum)
        factor = LOSSES[loss](c)
    p = sum(dict(work.named_parameters())[nm].numel() for nm in names)
    if use_gram is None:
        use_gram = (8.0 * n * c * p > (1 << 30) or p > 4 * n * c) and adaptive is None
    if use_gram and adaptive is not None:
        raise ValueError("use_gram=True: an adaptive optimizer's preconditioner needs the Jacobian (J P^{-1/2})")
    if use_gram:
        k = gram(work, x, dtype=dtype)
        if ce:
            k = _core.apply_curvature_to_gram(k, curvature, c)
        geometry = _core.Geometry.from_gram(k, c)
    else:
        jac = jacobian(work, x, dtype=dtype)
        if ce:
            jac = _core.apply_curvature(jac, curvature, c)
        raw_jac = jac  # Adam's or RMSprop's L2 decay needs J and P apart (adam_l2_curve)
        if adaptive is not None:
            jac = _core.precondition(jac, adaptive["preconditioner"])
        geometry = _core.Geometry.from_jacobian(jac, c)
    bs = list(batches) if batches is not None else _core.default_batches(n)
    if weight_decay is not None:
        if not (weight_decay >= 0 and math.isfinite(weight_decay)):
            raise ValueError(f"weight_decay: must be finite and >= 0, got {weight_decay}")
    wd = {} if weight_decay is None else {"weight_decay": weight_decay * factor}  # the library's lambda
    adam = adaptive is not None and "beta1" in adaptive
    # Learning rates: user = factor * library (Adam: also times its first bias correction, the step's lr / lr).
    lr_factor = factor * (adaptive["bias_correction1"] if adaptive is not None else 1.0)
    # Adam's or RMSprop's own L2 decay: g + wd theta before the division by P, wd in the library's loss units
    # factor * wd (the bias correction scales g and wd theta alike; theory/adaptive.md section 6).
    l2 = adaptive["l2_weight_decay"] if adaptive is not None else 0.0
    beta1 = adaptive["beta1"] if adam else 0.0

    def l2_points(batch_sizes):
        return _core.adam_l2_curve(raw_jac, c, adaptive["preconditioner"], list(batch_sizes), sampling, beta1,
                                   factor * l2, **solver_options)[0]

    if l2:
        pts = l2_points(bs)
    elif adam:
        beta1 = adaptive["beta1"]
        # AdamW's theta <- (1 - lr_torch wd) theta is (1 - lr wd_lib) theta in library units: wd_lib = lr_factor wd.
        adamw_wd = lr_factor * adaptive["decoupled_weight_decay"]
        pts = [_core.adam_threshold(geometry, b, sampling, beta1, 0, adamw_wd, **solver_options) for b in bs]
    elif momentum is None:
        if nesterov:
            raise ValueError("nesterov=True needs momentum=BETA")
        pts = _core.curve(geometry, bs, sampling, **wd, **solver_options).points
    else:
        pts = [_core.momentum_threshold(geometry, b, sampling, momentum, nesterov, 0, **wd, **solver_options)
               for b in bs]
    points = [{"batch": pt.batch, "eta_star": lr_factor * pt.eta_star, "eta_star_sgdstab": pt.eta_star,
               "converged": pt.converged, "status": pt.status, "matvecs": pt.matvecs,
               "error_bound": getattr(pt, "error_bound", None)} for pt in pts]
    if momentum is not None and not adam:  # momentum's certified bracket eta_low <= eta* <= eta_high (loss units)
        for point, pt in zip(points, pts):
            if pt.converged and pt.eta_high > 0:  # a failed solve has no bracket
                point.update(eta_bracket=[lr_factor * pt.eta_low, lr_factor * pt.eta_high])
    mo = {} if momentum is None else {"momentum": momentum, "nesterov": nesterov}
    verdict = None
    if lr is not None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr: the learning rate must be finite and > 0, got {lr}")
        # the point's own eta*(batch) when it was computed above (not solved twice)
        known = pts[bs.index(batch)] if batch in bs else None
        if l2:
            rad = (_core.adam_l2_radius(raw_jac, c, adaptive["preconditioner"], lr / lr_factor, batch, sampling, beta1,
                                        factor * l2, **solver_options) if radius else None)
            thr = known if known is not None else l2_points([batch])[0]
        elif adam:
            rad = (_core.adam_radius(geometry, lr / lr_factor, batch, sampling, beta1, adamw_wd, **solver_options)
                   if radius else None)
            thr = (known if known is not None else
                   _core.adam_threshold(geometry, batch, sampling, beta1, 0, adamw_wd, **solver_options))
        else:
            rad = (_core.radius(geometry, lr / lr_factor, batch, sampling, **mo, **wd, **solver_options)
                   if radius else None)
            thr = (known if known is not None else
                   _core.threshold(geometry, batch, sampling, **wd, **solver_options) if momentum is None else
                   _core.momentum_threshold(geometry, batch, sampling, momentum, nesterov, 0, **wd, **solver_options))
        # rho decides when it converged; otherwise the threshold does (stable iff lr <= eta*), and
        # rho is None: an unconverged radius (clustered eigenvalues near 1 at small lr with momentum) is no number.
        rho_ok = rad is not None and rad.converged
        if rho_ok:
            stable = rad.rho <= 1.0
        elif thr.converged:
            stable = lr <= lr_factor * thr.eta_star
        else:
            stable = None
        verdict = {"lr": lr, "batch": batch, "sampling": sampling, "rho": rad.rho if rho_ok else None,
                   "rho_converged": rho_ok, "stable": stable, "eta_star": lr_factor * thr.eta_star,
                   "decided_by": "rho" if rho_ok else "eta_star" if thr.converged else None,
                   "converged": thr.converged and stable is not None}
    extra = {}
    if adaptive is not None:
        extra = {"optimizer": adaptive["kind"], "bias_correction1": adaptive["bias_correction1"]}
        if adam:
            extra["beta1"] = beta1
            if adaptive["decoupled_weight_decay"]:
                extra["weight_decay_decoupled"] = True
    return Report(samples=n, outputs=c, params=p, rank=geometry.rank, loss=loss, lr_factor=lr_factor,
                  sampling=sampling, lambda_max=geometry.lambda_max / factor,
                  eta_gd=(lr_factor * pts[0].eta_mean if l2 else
                          lr_factor * (2 + 2 * beta1) / ((1 - beta1) * geometry.lambda_max + (1 + beta1) * adamw_wd)
                          if adam else
                          lr_factor * 2.0 / (geometry.lambda_max + wd.get("weight_decay", 0.0))),
                  momentum=0.0 if momentum is None else momentum, nesterov=bool(nesterov),
                  weight_decay=(l2 if l2 else adaptive["decoupled_weight_decay"] if adam else
                                0.0 if weight_decay is None else weight_decay),
                  max_residual=max_res, is_minimum=is_min, converged=all(p["converged"] for p in points), points=points,
                  verdict=verdict, loss_convention_sgdstab=_core.loss_convention, geometry=geometry, **extra)


def covariance(model, inputs, targets, lr=None, batch=None, loss="mse_mean", *, sampling="without", momentum=None,
               nesterov=False, weight_decay=None, optimizer=None, top=5, gradient_tolerance=1e-6, tolerance=1e-10,
               max_iterations=5000, dtype=_torch.float64):
    """The stationary covariance of SGD around ``model``'s parameters, a minimum of the square loss that does
    not interpolate (theory/covariance.md; `sgdstab covariance`), in ``loss``'s units.

    The residuals f(x_i) - y_i at the point give the per-sample gradients, which must sum to zero
    (gradient_tolerance: a minimum of the unpenalized loss; with weight_decay, of the penalized one). lr is
    torch's (MSELoss(mean): lr_factor C/2 as in analyze), batch the batch size, sampling the scheme;
    momentum=/nesterov= or optimizer= (a torch.optim.SGD) select momentum SGD (section 7). Returns a Report: trace
    (E|theta - theta*|^2 in the stationary state, parameter units), top_eigenvalues, excess_loss (the
    expected loss above the minimum's, in ``loss``'s units), rho (of the second-moment map at lr; >= 1 is a
    ValueError naming it), gradient_noise_trace (of the library's per-sample gradients), converged, status,
    message, lr, lr_factor, batch, sampling, momentum, nesterov, weight_decay (torch's), samples, outputs,
    params, rank, to_dict().

    loss="cross_entropy": torch.nn.CrossEntropyLoss(reduction="mean") on logits model(inputs), targets as in
    analyze, at a minimum (a non-separable problem: the per-sample gradients J_i^T (p_i - t_i) sum to zero);
    the geometry is that of S^{1/2} J with the softmax curvature (theory/loss_curvature.md), lr torch's.

    optimizer= a torch.optim.Adam, AdamW (weight_decay 0) or RMSprop: its second-moment state frozen as in
    analyze (theory/adaptive.md), the fluctuations are those of phi = P^{1/2} (theta - theta*) under
    heavy-ball momentum on J P^{-1/2} with gradients P^{-1/2} g_i, mapped back to theta: trace and
    top_eigenvalues are theta's, trace_preconditioned = E[(theta - theta*)^T P (theta - theta*)], and the
    excess_loss is the same in both coordinates.

    weight_decay=WD (or a torch.optim.SGD(weight_decay=WD) as optimizer=, with or without momentum): L2
    weight decay as torch.optim.SGD applies it, grad + WD theta in place of grad, at a minimum of the loss
    plus WD/2 |theta|^2 (the per-sample gradients plus WD theta sum to zero; theory/covariance.md section
    8). The library's lambda is WD lr_factor; excess_loss is that of ``loss`` without the penalty. Not with
    Adam's or RMSprop's own (L2) weight_decay (NotImplementedError); AdamW's decoupled one is
    covered: the point must then satisfy grad + bc1 WD P theta* = 0 (bc1 = 1 - beta1^t, Adam's first bias
    correction, 1 late in training: a minimum of the loss + WD/2 theta^T P theta), and the report says
    weight_decay=WD, weight_decay_decoupled=True.
    """
    ce = loss == "cross_entropy"
    if loss not in LOSSES and not ce:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)} or 'cross_entropy', got {loss!r}")
    adaptive = None
    if optimizer is not None:
        if lr is not None or momentum is not None or nesterov:
            raise ValueError("optimizer= gives lr, momentum and nesterov: do not pass them as well")
        adaptive = _adaptive_settings(optimizer, model)
        if adaptive is not None and adaptive["l2_weight_decay"]:
            raise NotImplementedError(f"covariance: {type(optimizer).__name__} with its own (L2) "
                                      f"weight_decay={adaptive['l2_weight_decay']} is not covered (its threshold "
                                      "is: analyze; AdamW's decoupled decay is covered here)")
        if adaptive is None:
            if weight_decay is not None:
                raise ValueError("optimizer= gives weight_decay: do not pass it as well")
            settings = _sgd_settings(optimizer)
            lr, momentum, nesterov = settings["lr"], settings["momentum"], settings["nesterov"]
            weight_decay = settings["weight_decay"]
        else:
            lr = adaptive["lr"]
            momentum = adaptive.get("beta1", adaptive.get("momentum"))
    if lr is None or batch is None:
        raise ValueError("give lr and batch (or optimizer= and batch)")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: the learning rate must be finite and > 0, got {lr}")
    if weight_decay is not None and not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"weight_decay: must be finite and >= 0, got {weight_decay}")
    if weight_decay and adaptive is not None:
        raise NotImplementedError("covariance: weight_decay with an adaptive optimizer is not covered (SGD's, "
                                  "with or without momentum, is: theory/covariance.md section 8)")
    work, x, names = _prepare(model, inputs, dtype)
    if ce:  # each sample's loss gradient in its logits is p_i - t_i; the geometry is that of S^{1/2} J
        n, c, _, curvature, residuals = _cross_entropy_point(work, x, targets, with_residuals=True)
        factor = 1.0  # CrossEntropyLoss(mean) is (1/n) sum l_i: the library's units
    else:
        n, c, _, _ = _check_minimum(work, x, targets, 0.0, True)  # shapes only: the minimum is the gradients' test
        with _torch.no_grad():
            out = work(x).double().cpu().reshape(n, c)
        y = targets if isinstance(targets, _torch.Tensor) else _torch.as_tensor(_np.asarray(targets))
        residuals = (out - y.detach().double().cpu().reshape(n, c)).numpy()
        factor = LOSSES[loss](c)
    jac = jacobian(work, x, dtype=dtype)
    residuals = residuals.reshape(n, c)
    grads = _np.stack([jac[i * c:(i + 1) * c].T @ residuals[i] for i in range(n)])  # g_i = J_i^T r_i (n x p)
    if ce:
        jac = _core.apply_curvature(jac, curvature, c)
    mo = {"momentum": 0.0 if momentum is None else momentum, "nesterov": bool(nesterov)}
    lr_factor, lr_lib = factor, lr / factor
    if weight_decay:  # torch's step lr (grad_t + WD theta) = (lr / factor) (g + factor WD theta): lambda = factor WD
        params = dict(work.named_parameters())
        theta = _torch.cat([params[nm].detach().reshape(-1) for nm in names]).double().cpu().numpy()
        mo.update(weight_decay=float(weight_decay) * factor, theta=theta)
    if adaptive is not None:
        # phi = P^{1/2} delta: heavy-ball on J P^{-1/2} with gradients P^{-1/2} g_i; Adam at lr (1 - beta1)
        # (theory/adaptive.md, eq. 3), lr in library units with Adam's first bias correction (as analyze).
        jac = _core.precondition(jac, adaptive["preconditioner"])
        grads = grads / _np.sqrt(adaptive["preconditioner"])
        lr_factor = factor * adaptive["bias_correction1"]
        lr_lib = lr / lr_factor * (1.0 - adaptive["beta1"] if "beta1" in adaptive else 1.0)
        if adaptive.get("decoupled_weight_decay"):
            # AdamW: theta <- (1 - lr wd) theta before the step; in phi the heavy-ball's decoupled mu = omega /
            # (1 - beta1), omega = lr_factor wd (theory/adaptive.md section 5), at phi* = P^{1/2} theta*, a point
            # with gbar + omega P theta* = 0 (theory/covariance.md section 8).
            params = dict(work.named_parameters())
            theta = _torch.cat([params[nm].detach().reshape(-1) for nm in names]).double().cpu().numpy()
            omega = lr_factor * adaptive["decoupled_weight_decay"]
            mo.update(decoupled_weight_decay=omega / (1.0 - adaptive["beta1"]),
                      theta=_np.sqrt(adaptive["preconditioner"]) * theta)
    geometry = _core.Geometry.from_jacobian(jac, c)
    as_dict, sigma = _core.covariance_from_gradients(geometry, jac, grads, lr_lib, batch, sampling, top,
                                                     gradient_tolerance, tolerance, max_iterations, **mo)
    theta_space = {}
    if adaptive is not None:
        # Back to theta: Sigma_delta = P^{-1/2} V X V^T P^{-1/2}, V = J~^T Z (n diag d)^{-1} the basis of range(H~)
        # (theory/covariance.md, eq. 5): tr = <V^T P^{-1} V, X>, eigenvalues those of X^{1/2} V^T P^{-1} V X^{1/2}.
        basis = jac.T @ _np.asarray(geometry.factor) / (n * _np.asarray(geometry.hessian_eigenvalues))
        gram_p = basis.T @ (basis / adaptive["preconditioner"][:, None])
        w, u = _np.linalg.eigh(0.5 * (sigma + sigma.T))
        half = (u * _np.sqrt(_np.clip(w, 0.0, None))) @ u.T
        ev = _np.sort(_np.linalg.eigvalsh(half @ gram_p @ half))[::-1][:top]
        theta_space = {"trace": float(_np.sum(gram_p * sigma)), "top_eigenvalues": [float(e) for e in ev]}
    p = sum(dict(work.named_parameters())[nm].numel() for nm in names)
    extra = {} if adaptive is None else {"optimizer": adaptive["kind"], "trace_preconditioned": as_dict["trace"],
                                         "bias_correction1": adaptive["bias_correction1"]}
    if adaptive is not None and adaptive.get("decoupled_weight_decay"):
        extra.update(weight_decay=adaptive["decoupled_weight_decay"], weight_decay_decoupled=True)
    return CovarianceReport(samples=n, outputs=c, params=p, rank=geometry.rank, loss=loss, lr=lr, lr_factor=lr_factor,
                            batch=batch, sampling=sampling, momentum=mo["momentum"], nesterov=mo["nesterov"],
                            **({} if "weight_decay" in extra else {"weight_decay": float(weight_decay or 0.0)}),
                            trace=theta_space.get("trace", as_dict["trace"]),
                            top_eigenvalues=theta_space.get("top_eigenvalues", as_dict["top_eigenvalues"]),
                            excess_loss=as_dict["excess_loss"] / factor,
                            rho=as_dict["rho"], gradient_noise_trace=as_dict["gradient_noise_trace"],
                            converged=as_dict["converged"], status=as_dict["status"], message=as_dict["message"],
                            loss_convention_sgdstab=_core.loss_convention, **extra)


def measures(model, inputs, loss="mse_mean", *, dtype=_torch.float64, **solver_options):
    """Sharpness, non-uniformity, |H|_F and Tr H of ``model``'s Gauss-Newton Hessian, in ``loss``'s units.

    H = (1/n) sum_i h_i with h_i the Hessian of sample i's loss (for
    "mse_mean", torch.nn.MSELoss: h_i = (2/C) J_i^T J_i), all at the current
    parameters; at an interpolating minimum this is the Hessian itself,
    elsewhere its Gauss-Newton part. Returns a Report: samples, outputs,
    params, loss, sharpness = lambda_max(H), non_uniformity =
    sqrt(lambda_max((1/n) sum h_i^2 - H^2)) (Wu, Ma & E 2018),
    hessian_frobenius, hessian_trace, converged, status, message, seconds
    (Gram and measures), and library (the sgdstab.HessianMeasures in the
    library's units). From the Gram (sgdstab.torch.gram) without its
    eigendecomposition: sgdstab.hessian_measures (theory/bounds.md, section
    7); solver_options as there.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    import time

    start = time.perf_counter()
    work, x, names = _prepare(model, inputs, dtype)
    c = _outputs_count(work, x)
    p = sum(dict(work.named_parameters())[nm].numel() for nm in names)
    k = gram(work, x, dtype=dtype)
    lib = _core.hessian_measures(k, c, **solver_options)
    factor = LOSSES[loss](c)  # eta_loss = factor * eta_library, so curvatures divide by it
    return MeasuresReport(samples=x.shape[0], outputs=c, params=p, loss=loss, sharpness=lib.sharpness / factor,
                  non_uniformity=lib.non_uniformity / factor, hessian_frobenius=lib.hessian_frobenius / factor,
                  hessian_trace=lib.hessian_trace / factor, converged=lib.converged, status=lib.status,
                  message=lib.message, seconds=time.perf_counter() - start, library=lib)


class MeasuresReport(Report):
    """What ``measures`` found (in the units of ``loss``)."""

    def to_dict(self):
        d = {k: v for k, v in self.__dict__.items() if k != "library"}
        d["library"] = self.library.to_dict()
        return d

    def __repr__(self):
        return (f"<sgdstab.torch.MeasuresReport loss={self.loss} sharpness={self.sharpness:.6g} "
                f"non_uniformity={self.non_uniformity:.6g} hessian_frobenius={self.hessian_frobenius:.6g} "
                f"status={self.status}>")


def _cross_entropy_point(work, x, targets, with_residuals=False):
    """(n, C, max |p_i - t_i|, the stacked S_i = diag(p_i) - p_i p_i^T) for logits model(x) and targets given
    as class indices (n,) or class probabilities (n, C), as torch.nn.CrossEntropyLoss takes them; with
    with_residuals also p - t (n x C, NumPy): each sample's loss gradient in its logits."""
    with _torch.no_grad():
        out = work(x)
    if out.dim() != 2 or out.shape[1] < 2:
        raise ValueError(f"loss='cross_entropy': model(inputs) must be (n, C) logits with C >= 2, got shape "
                         f"{tuple(out.shape)}")
    n, c = out.shape
    probs = _torch.softmax(out.double().cpu(), dim=1)
    y = targets if isinstance(targets, _torch.Tensor) else _torch.as_tensor(_np.asarray(targets))
    y = y.detach().cpu()
    if y.dim() == 1 and y.shape[0] == n and not y.is_floating_point():
        if int(y.min()) < 0 or int(y.max()) >= c:
            raise ValueError(f"targets: class indices must be in 0..{c - 1}, got {int(y.min())}..{int(y.max())}")
        t = _torch.nn.functional.one_hot(y.long(), c).double()
    elif tuple(y.shape) == (n, c) and y.is_floating_point():
        t = y.double()
    else:
        raise ValueError(f"targets: expected {n} class indices (integers) or an {n} x {c} float tensor of class "
                         f"probabilities, got shape {tuple(y.shape)} dtype {y.dtype}")
    max_res = float((probs - t).abs().max())
    if with_residuals:
        return n, c, max_res, _core.softmax_curvature(probs.numpy()), (probs - t).numpy()
    return n, c, max_res, _core.softmax_curvature(probs.numpy())


class TorchModel(_core.LinearizedModel):
    """The linearized model of an ``nn.Module`` at its current parameters, by products only.

    A ``sgdstab.LinearizedModel``: ``jacobian_times(V)`` is J V by one
    forward-mode pass (jvp) per column, ``jacobian_transpose_times(U)`` is
    J^T U by one reverse-mode pass (vjp) per column after a shared forward
    pass, ``sample_grams()`` the blocks J_i J_i^T: for a network whose
    trainable parameters are all ``nn.Linear`` weights and biases (each
    layer run once per forward, one row per sample) from C backward passes
    per chunk of 1024 samples, layer by layer (``_linear_sample_grams``:
    <d_ik, d_il>(|a_i|^2 + 1)); for any other model from C backward passes
    per sample (C x p memory at a time). J itself is never held: memory is
    one pass's activations over the n inputs plus O(n C + p) per column.
    Rows, columns and precision follow ``jacobian()`` (float64 on a copy of
    the model by default; ``dtype=torch.float32`` halves the memory and
    time, with float32 rounding in every product, so the band's sides hold
    only up to ~1e-7). The model is run as it is (call ``model.eval()``
    first: samples must not interact, as in batch norm's training mode; the
    layer-wise Grams are checked against the loop on the first sample). The
    loss convention is the library's (products of the
    outputs, not of a loss).
    """

    def __init__(self, model, inputs, *, dtype=_torch.float64):
        super().__init__()
        self._work, self._x, self._names = _prepare(model, inputs, dtype)
        self._c = _outputs_count(self._work, self._x)
        self._n = self._x.shape[0]
        params = dict(self._work.named_parameters())
        self._params = {nm: params[nm].detach() for nm in self._names}
        self._others = {nm: p.detach() for nm, p in params.items() if nm not in self._params}
        self._shapes = [(nm, self._params[nm].shape, self._params[nm].numel()) for nm in self._names]
        self._p = sum(size for _, _, size in self._shapes)
        self._dtype = dtype
        self._device = self._params[self._names[0]].device

    def samples(self):
        return self._n

    def outputs(self):
        return self._c

    def params(self):
        return self._p

    def _f(self, sub):
        functional_call, _, _ = _functional()
        full = dict(self._others)
        full.update(sub)
        return functional_call(self._work, full, (self._x,)).reshape(-1)  # sample-major: row i*C + k

    def _unflatten(self, v):
        out, at = {}, 0
        for nm, shape, size in self._shapes:
            out[nm] = v[at:at + size].reshape(shape)
            at += size
        return out

    def _column(self, a, j):
        return _torch.as_tensor(_np.ascontiguousarray(a[:, j]), dtype=self._dtype, device=self._device)

    def jacobian_times(self, v):
        v = _np.asarray(v, dtype=_np.float64)
        if v.ndim != 2 or v.shape[0] != self._p:
            raise ValueError(f"jacobian_times: expected a {self._p} x k array, got shape {v.shape}")
        jvp, _ = _products()
        out = _np.empty((self._n * self._c, v.shape[1]))
        for j in range(v.shape[1]):
            _, t = jvp(self._f, (self._params,), (self._unflatten(self._column(v, j)),))
            out[:, j] = t.detach().double().cpu().numpy()
        return out

    def jacobian_transpose_times(self, u):
        u = _np.asarray(u, dtype=_np.float64)
        if u.ndim != 2 or u.shape[0] != self._n * self._c:
            raise ValueError(f"jacobian_transpose_times: expected a {self._n * self._c} x k array, got shape {u.shape}")
        _, vjp = _products()
        _, pullback = vjp(self._f, self._params)
        out = _np.empty((self._p, u.shape[1]))
        for j in range(u.shape[1]):
            (grads,) = pullback(self._column(u, j))
            out[:, j] = _torch.cat([grads[nm].reshape(-1) for nm in self._names]).detach().double().cpu().numpy()
        return out

    def sample_grams(self):
        # Networks whose trainable parameters are all nn.Linear weights and
        # biases take the layer-wise path (C backward passes per chunk of
        # samples); any other model the per-sample loop.
        fast = _linear_sample_grams(self._work, self._x, self._names, self._c)
        if fast is not None:
            return fast
        return _loop_sample_grams(self._work, self._x, self._names, self._c, 0, self._n)


def _loop_sample_grams(work, x, names, c, start, stop):
    """J_i J_i^T for samples start..stop-1 by one backward pass per (sample,
    output): on PyTorch 1.13's CPU 8x faster than vmap(jacrev) in chunks."""
    out = _np.empty(((stop - start) * c, c))
    for i in range(start, stop):
        j = _sample_jacobian(work, x, names, c, [i])
        out[(i - start) * c:(i - start + 1) * c] = (j @ j.T).numpy()
    return out


def _linear_layers(work, names):
    """[(module, weight trains, bias trains)] when every trainable parameter is
    the weight or bias of exactly one nn.Linear; None otherwise."""
    params = dict(work.named_parameters())
    trainable = {id(params[nm]) for nm in names}
    layers, seen = [], []
    for mod in work.modules():
        if not isinstance(mod, _torch.nn.Linear):
            continue
        tw = id(mod.weight) in trainable
        tb = mod.bias is not None and id(mod.bias) in trainable
        if tw or tb:
            layers.append((mod, tw, tb))
            seen += ([id(mod.weight)] if tw else []) + ([id(mod.bias)] if tb else [])
    if not layers or len(seen) != len(set(seen)) or set(seen) != trainable:
        return None
    return layers


def _linear_backprops(work, x, names, c, consume, chunk=1024):
    """Runs a network whose trainable parameters are nn.Linear weights and
    biases, each layer run once per forward on (m, in) rows (one row per
    sample), in chunks of m samples, and calls consume(start, m, rec) with
    rec = [(a, d, weight trains, bias trains)] per layer (float64, on the
    CPU): a (m x in) the layer's input and d (m x C x out) the derivatives d f_k(x_i) / d(its
    output), from C backward passes of the sums over the chunk (samples do
    not interact: eval mode). The per-sample gradient of the layer's weight
    for output k is d_ik a_i^T, of its bias d_ik. Returns False (having
    consumed nothing or a partial run the caller discards) when the model is
    not of that form."""
    layers = _linear_layers(work, names)
    if layers is None:
        return False
    n = x.shape[0]
    records = {}

    def hook(mod, inp, out):
        records.setdefault(mod, []).append((inp[0], out))
        return out.clone()  # an in-place op after the layer must not touch the recorded output

    handles = [mod.register_forward_hook(hook) for mod, _, _ in layers]
    try:
        for start in range(0, n, chunk):
            xs = x[start:start + chunk]
            m = xs.shape[0]
            records.clear()
            with _torch.enable_grad():
                o = work(xs)
                o = o.reshape(m, -1)
                if o.shape[1] != c:
                    return False
                rec = []
                for mod, tw, tb in layers:
                    calls = records.get(mod, [])
                    if len(calls) != 1:
                        return False
                    a, z = calls[0]
                    if a.dim() != 2 or z.dim() != 2 or a.shape[0] != m or z.shape[0] != m:
                        return False
                    rec.append((a, z, tw, tb))
                outs = [z for _, z, _, _ in rec]
                deltas = []
                for k in range(c):
                    g = _torch.autograd.grad(o[:, k].sum(), outs, retain_graph=k + 1 < c, allow_unused=True)
                    deltas.append([_torch.zeros_like(z) if d is None else d for d, z in zip(g, outs)])
            consume(start, m, [(a.detach().double().cpu(),
                                _torch.stack([deltas[k][j] for k in range(c)], dim=1).double().cpu(), tw, tb)
                               for j, (a, z, tw, tb) in enumerate(rec)])
    finally:
        for h in handles:
            h.remove()
    return True


def _linear_sample_grams(work, x, names, c, chunk=1024):
    """J_i J_i^T of a network whose trainable parameters are nn.Linear weights
    and biases (``_linear_backprops``): each layer adds <d_ik, d_il>
    (|a_i|^2 [weight] + [bias]) to (J_i J_i^T)_kl. None when the model is not
    of that form (the caller loops over samples); the first sample is
    checked against the loop, and a mismatch falls back too."""
    n = x.shape[0]
    grams = _np.empty((n * c, c))

    def consume(start, m, rec):
        block = _torch.zeros((m, c, c), dtype=_torch.float64)
        for a, d, tw, tb in rec:
            scale = (a.pow(2).sum(1) if tw else _torch.zeros(m, dtype=_torch.float64)) + (1.0 if tb else 0.0)
            block += (d @ d.transpose(1, 2)) * scale[:, None, None]
        grams[start * c:(start + m) * c] = block.reshape(m * c, c).cpu().numpy()

    if not _linear_backprops(work, x, names, c, consume, chunk):
        return None
    ref = _loop_sample_grams(work, x, names, c, 0, 1)
    rtol, atol = _check_tolerances(work)
    if not _np.allclose(grams[:c], ref, rtol=rtol, atol=atol * max(1.0, float(_np.abs(ref).max()))):
        warnings.warn("sgdstab.torch: the layer-wise per-sample Grams disagree with the per-sample loop on the "
                      "first sample (samples interact?); using the loop")
        return None
    return grams


def _linear_gram(work, x, names, c, chunk=1024):
    """The whole NTK Gram of a network of nn.Linear layers
    (``_linear_backprops``): K[(i,k),(j,l)] = sum over layers of <d_ik, d_jl>
    (<a_i, a_j> [weight] + [bias]), i.e. per layer (D D^T) * kron(A A^T + 1,
    ones(C, C)) with D the (n C) x out derivatives and A the n x in inputs:
    O((nC)^2 (out + in)) flops, no (nC) x p Jacobian. None when the model is
    not of that form; the blocks of the first and last samples are checked
    against their Jacobian rows (one backward pass per output), and a
    mismatch falls back too."""
    n = x.shape[0]
    parts = []

    def consume(start, m, rec):
        parts.append(rec)

    if not _linear_backprops(work, x, names, c, consume, chunk):
        return None
    k = _torch.zeros((n * c, n * c), dtype=_torch.float64)
    rows = max(1, min(n, (1 << 27) // max(1, 8 * n * c * c)))  # samples per block: a temporary of <= 128 MiB
    for j in range(len(parts[0])):
        a = _torch.cat([rec[j][0] for rec in parts])  # n x in
        d = _torch.cat([rec[j][1] for rec in parts]).reshape(n * c, -1)  # nC x out
        tw, tb = parts[0][j][2], parts[0][j][3]
        for i0 in range(0, n, rows):
            i1 = min(n, i0 + rows)
            s = (a[i0:i1] @ a.T if tw else _torch.zeros((i1 - i0, n), dtype=_torch.float64)) + (1.0 if tb else 0.0)
            g = d[i0 * c:i1 * c] @ d.T
            g.view(i1 - i0, c, n, c).mul_(s[:, None, :, None])
            k[i0 * c:i1 * c] += g
        del a, d
    parts.clear()
    ref = _sample_jacobian(work, x, names, c, [0, n - 1])
    want = (ref @ ref.T).numpy()
    idx = _np.r_[0:c, (n - 1) * c:n * c]
    got = k.numpy()[_np.ix_(idx, idx)]
    rtol, atol = _check_tolerances(work)
    if not _np.allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(_np.abs(want).max()))):
        warnings.warn("sgdstab.torch: the layer-wise Gram disagrees with the Jacobian rows of the first and last "
                      "samples (samples interact?); using the per-tensor Jacobians")
        return None
    return k.numpy()


def _check_tolerances(work):
    """(rtol, atol relative to the largest entry) for comparing two ways of
    computing the same Gram entries in the model's precision."""
    eps = max((_torch.finfo(t.dtype).eps for t in work.parameters() if t.is_floating_point()), default=0.0)
    return max(1e-6, 1000.0 * eps), max(1e-12, 100.0 * eps)


def _sample_jacobian(work, x, names, c, samples):
    """The Jacobian rows (len(samples) * C) x p of the given samples, one
    backward pass per (sample, output), as a float64 torch tensor."""
    params = dict(work.named_parameters())
    wrt = [params[nm] for nm in names]
    rows = []
    for i in samples:
        with _torch.enable_grad():
            o = work(x[i:i + 1]).reshape(-1)
            for k in range(c):
                grads = _torch.autograd.grad(o[k], wrt, retain_graph=k + 1 < c, allow_unused=True)
                rows.append(_torch.cat([(_torch.zeros_like(w) if g is None else g).reshape(-1)
                                        for w, g in zip(wrt, grads)]).detach().double().cpu())
    return _torch.stack(rows)


def _check_minimum(work, x, targets, residual_tolerance, allow_non_minimum):
    """(n, C, max |f - y|, is_minimum); ValueError when not a minimum unless allowed."""
    with _torch.no_grad():
        out = work(x)
    c = 1 if out.dim() == 1 else out.shape[1]
    n = x.shape[0]
    y = targets if isinstance(targets, _torch.Tensor) else _torch.as_tensor(_np.asarray(targets))
    y = y.detach().to(dtype=_torch.float64).reshape(n, c) if y.numel() == n * c else None
    if y is None:
        raise ValueError(f"targets: expected {n} x {c} values (one per sample and output), got shape "
                         f"{tuple(_torch.as_tensor(_np.asarray(targets)).shape)}")
    res = (out.double().cpu().reshape(n, c) - y.cpu())
    max_res = float(res.abs().max())
    scale = max(1.0, float(y.abs().max()))
    is_min = max_res <= residual_tolerance * scale
    if not is_min and not allow_non_minimum:
        raise ValueError(f"not an interpolating minimum: max |f(x_i) - y_i| = {max_res:.3g} > residual_tolerance "
                         f"* max(1, max|y|) = {residual_tolerance * scale:.3g}; train further (sgdstab's theory holds "
                         f"at interpolating minima) or pass allow_non_minimum=True to analyze the Gauss-Newton part")
    return n, c, max_res, is_min


def band(model, inputs, targets, batches=None, loss="mse_mean", *, sampling="without", residual_tolerance=1e-6,
         allow_non_minimum=False, dtype=_torch.float64, **band_options):
    """A band eta_low <= eta*(B) <= eta_high at ``model``'s parameters, from products only.

    eta_high is certified; eta_low is certified or, where tighter, holds with
    probability >= 1 - delta over the seeded random start (``eta_low_kind``;
    ``delta=0`` keeps it certified; over K batch sizes jointly 1 - K delta).

    The matrix-free counterpart of ``analyze`` (theory/band.md, section 5):
    the same minimum check and learning-rate units (``loss``), no Jacobian
    or Gram held, so it reaches networks and datasets where ``analyze``
    cannot. ``band_options`` are sgdstab.band's (subspace, lanczos_steps,
    delta, seed, ...: ``sgdstab.band_options()``); momentum=BETA and
    nesterov=True give the band of torch.optim.SGD(momentum=BETA, nesterov=...)
    in the same lr units (theory/band.md, section 6).

    Returns a Report: samples, outputs, params, loss, lr_factor, sampling,
    momentum, nesterov, max_residual, is_minimum, points [{batch, eta_low, eta_high (loss
    units), eta_low_sgdstab, eta_high_sgdstab, relative_width, eta_low_kind,
    delta, eta_low_certified (loss units), subspace_dimension,
    subspace_doublings, products, converged, status, message}], products (in all), seconds, results (the
    sgdstab.BandResult of each B), to_dict().
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    tm = TorchModel(model, inputs, dtype=dtype)
    n, c, max_res, is_min = _check_minimum(tm._work, tm._x, targets, residual_tolerance, allow_non_minimum)
    factor = LOSSES[loss](c)
    bs = list(batches) if batches is not None else _core.default_batches(n)
    results = _core.bands(tm, bs, sampling, **band_options)
    points = [{"batch": r.batch, "eta_low": factor * r.eta_low, "eta_high": factor * r.eta_high,
               "eta_low_sgdstab": r.eta_low, "eta_high_sgdstab": r.eta_high, "relative_width": r.relative_width,
               "eta_low_kind": r.eta_low_kind, "delta": r.delta, "eta_low_certified": factor * r.eta_low_certified,
               "subspace_dimension": r.subspace_dimension, "subspace_doublings": r.subspace_doublings,
               "products": r.products, "converged": r.converged,
               "status": r.status, "message": r.message} for r in results]
    beta = float(band_options.get("momentum", 0.0))
    return BandReport(samples=n, outputs=c, params=tm.params(), loss=loss, lr_factor=factor, sampling=sampling,
                      momentum=beta, nesterov=bool(band_options.get("nesterov", False)) and beta > 0.0,
                      max_residual=max_res, is_minimum=is_min, converged=all(p["converged"] for p in points),
                      points=points, products=results[0].products if results else 0,
                      seconds=results[0].seconds if results else 0.0,
                      loss_convention_sgdstab=_core.loss_convention, results=results)


def stability(model, inputs, targets, batches=None, loss="mse_mean", *, engine="auto", exact_max_rank=4096,
              memory_limit=None, sampling="without", momentum=None, nesterov=False, residual_tolerance=1e-6,
              allow_non_minimum=False, dtype=_torch.float64, solver_options=None, band_options=None):
    """eta*(B) exactly where the exact solver fits, a band where it does not.

    engine: "exact" (``analyze``), "band" (``band``, from products) or
    "auto" (default): exact when the rank bound r = min(n C, p) is at most
    ``exact_max_rank`` (default 4096, the CLI's ``--exact-max-rank``) and
    the exact path's memory fits in ``memory_limit`` bytes (default: the
    memory available, MemAvailable); the band otherwise. The exact path is
    ``analyze``'s own choice (the Gram when 8 n C p > 1 GiB or p > 4 n C,
    else the Jacobian); its memory is counted as three copies of that
    matrix (PyTorch's, the library's, the eigensolver's work) plus the exact
    solver's least footprint at rank r (``sgdstab.exact_region_min_bytes``;
    theory/band.md section 7). The memory available is
    ``sgdstab.available_memory_bytes()`` (MemAvailable, the memory cgroup's
    room and ``ulimit -v``'s). When auto chose the exact engine and it runs
    out of memory all the same (MemoryError, or PyTorch's out-of-memory
    error), the band runs instead and ``engine_reason`` says so; an engine
    named explicitly raises.
    ``solver_options`` go to the exact solver (``sgdstab.solver_options()``),
    ``band_options`` to the band (``sgdstab.band_options()``); an engine
    named explicitly refuses the other's options (ValueError); the other
    arguments are ``analyze``'s and ``band``'s. momentum=BETA, nesterov=...:
    torch.optim.SGD(momentum=BETA, nesterov=...) with either engine (the
    band of theory/band.md section 6; the exact points' bracket is then the
    momentum threshold's certified one).

    Returns the Report of the engine that ran (``analyze``'s or ``band``'s),
    with ``engine`` ("exact" or "band") and ``engine_reason`` added, and
    every point carrying ``eta_low`` and ``eta_high`` in the units of
    ``loss``. For the exact engine they are its certified bracket,
    eta_star / (1 + error_bound) <= eta* <= eta_star (theory/threshold.md;
    with momentum the momentum threshold's eta_bracket, theory/momentum.md;
    ``eta_low_kind`` "certified"; 0 where the solver gave no finite bound,
    and a point that did not converge says so in ``converged``/``status``);
    for the band they are the band's sides.
    """
    import numbers

    if loss == "cross_entropy":
        raise ValueError("loss='cross_entropy': stability() does not choose engines for it yet (the band has no "
                         "curvature); use analyze(..., loss='cross_entropy')")
    if engine not in ("auto", "exact", "band"):
        raise ValueError(f"engine: expected 'auto', 'exact' or 'band', got {engine!r}")
    if not (isinstance(exact_max_rank, numbers.Integral) and not isinstance(exact_max_rank, bool)
            and exact_max_rank >= 1):
        raise ValueError(f"exact_max_rank: expected an integer >= 1, got {exact_max_rank!r}")
    if memory_limit is not None and not (isinstance(memory_limit, numbers.Real) and memory_limit > 0
                                         and math.isfinite(memory_limit)):
        raise ValueError(f"memory_limit: expected a finite number of bytes > 0, got {memory_limit!r}")
    solver_options = dict(solver_options or {})
    band_options = dict(band_options or {})
    if "momentum" in band_options or "nesterov" in band_options:
        raise ValueError("band_options: give momentum= and nesterov= to stability() itself (both engines use them)")
    if "momentum" in solver_options or "nesterov" in solver_options:
        raise ValueError("solver_options: give momentum= and nesterov= to stability() itself (both engines use them)")
    # analyze's optimizer settings the band has no counterpart for: exact engine only.
    exact_only = sorted(k for k in ("optimizer", "weight_decay", "lr", "batch") if k in solver_options)
    if exact_only and engine != "exact":
        raise ValueError(f"solver_options {exact_only}: analyze's settings that the band does not take; "
                         "use engine='exact'")
    if nesterov and momentum is None:
        raise ValueError("nesterov=True needs momentum=BETA")
    # An engine chosen by name does not run the other: its options would be dropped without a word.
    if engine == "band" and solver_options:
        raise ValueError(f"solver_options {sorted(solver_options)}: options of the exact engine, which engine='band' "
                         "does not run (the band's go in band_options)")
    if engine == "exact" and band_options:
        raise ValueError(f"band_options {sorted(band_options)}: options of the band, which engine='exact' does not "
                         "run (the exact engine's go in solver_options)")
    chosen = engine != "auto"
    if engine == "auto":
        # Sizes without copying the model: n from the inputs, C from the
        # targets (analyze/band check them against the model's outputs), p
        # from the trainable parameters.
        n = int(inputs.shape[0]) if hasattr(inputs, "shape") else len(inputs)
        y = targets if isinstance(targets, _torch.Tensor) else _np.asarray(targets)
        c = max(1, int(y.numel() if isinstance(y, _torch.Tensor) else y.size) // max(1, n))
        p = sum(t.numel() for t in model.parameters() if t.requires_grad)
        r = min(n * c, p)
        use_gram = 8.0 * n * c * p > (1 << 30) or p > 4 * n * c
        matrix = 8.0 * (n * c) ** 2 if use_gram else 8.0 * n * c * p
        # Only SolverOptions' keys (solver_options may carry analyze's own, such as use_gram).
        keys = {row[0] for row in _core._solver_option_table()}
        need = 3.0 * matrix + _core._exact_region_min_bytes_for_sizes(
            n * c, r, **{k: v for k, v in solver_options.items() if k in keys})
        limit = memory_limit if memory_limit is not None else _available_bytes()
        if r > exact_max_rank:
            engine, reason = "band", f"rank bound min(nC, p) = {r} > exact_max_rank {exact_max_rank}"
        elif limit is not None and need > limit:
            engine, reason = "band", (f"the exact engine needs about {need / 2**30:.2f} GiB, more than the "
                                      f"{limit / 2**30:.2f} GiB available")
        else:
            engine, reason = "exact", f"rank bound min(nC, p) = {r} <= exact_max_rank {exact_max_rank}"
    else:
        reason = f"engine={engine!r}"
    rep = None
    if engine == "exact":
        try:
            rep = analyze(model, inputs, targets, batches=batches, loss=loss, sampling=sampling,
                          momentum=momentum, nesterov=nesterov, residual_tolerance=residual_tolerance,
                          allow_non_minimum=allow_non_minimum, dtype=dtype, **solver_options)
        except (MemoryError, RuntimeError) as e:
            # An allocation the estimate did not foresee (memory taken
            # meanwhile, a limit it cannot see): auto falls back to the band
            # and says why, as the command line's region does. A chosen
            # engine, or another error, is the caller's.
            if chosen or not _out_of_memory(e):
                raise
            engine, reason = "band", f"the exact engine ran out of memory: {e}"
    if engine == "exact":
        for pt in rep.points:
            if "eta_bracket" in pt:  # momentum: the threshold's own certified bracket
                low, high = pt["eta_bracket"]
            else:
                bound = pt["error_bound"]
                ok = bound is not None and math.isfinite(bound) and bound >= 0
                low, high = (pt["eta_star"] / (1.0 + bound) if ok else 0.0), pt["eta_star"]
            pt.update(eta_low=low, eta_high=high, eta_low_kind="certified")
    else:
        mo = {} if momentum is None else {"momentum": momentum, "nesterov": nesterov}
        rep = band(model, inputs, targets, batches=batches, loss=loss, sampling=sampling,
                   residual_tolerance=residual_tolerance, allow_non_minimum=allow_non_minimum, dtype=dtype,
                   **mo, **band_options)
    rep.engine, rep.engine_reason = engine, reason
    return rep


class BandReport(Report):
    """What ``band`` found: eta_low <= eta*(B) <= eta_high in the units of ``loss``."""

    def to_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "results"}

    def __repr__(self):
        pts = ", ".join(f"B={p['batch']}: [{p['eta_low']:.6g}, {p['eta_high']:.6g}]" for p in self.points)
        return f"<sgdstab.torch.BandReport loss={self.loss} {{{pts}}}>"
