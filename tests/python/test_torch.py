# sgdstab.torch against independent references: a per-sample autograd loop
# for the Jacobian and the Gram, and torch.optim.SGD itself for the learning
# rate conversion of MSELoss(reduction="mean").
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (python3-torch) is not installed")
import sgdstab  # noqa: E402
import sgdstab.torch as st  # noqa: E402


def mlp(d, c, seed, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 7), torch.nn.Tanh(), torch.nn.Linear(7, 5), torch.nn.Tanh(),
                               torch.nn.Linear(5, c)).to(dtype)


def naive_jacobian(model, x):
    """Row i*C + k: d f_k(x_i) / d theta by one backward pass per (sample, output), in float64."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i:i + 1]).reshape(-1)
        for k in range(out.shape[0]):
            grads = torch.autograd.grad(out[k], params, retain_graph=True)
            rows.append(torch.cat([gr.reshape(-1) for gr in grads]).double())
    return torch.stack(rows).numpy()


def test_jacobian_and_gram_equal_a_per_sample_autograd_loop():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    for c in (1, 3):
        model = mlp(4, c, seed=c)
        ref = naive_jacobian(model.double(), x.double())
        model = model.float()
        j = st.jacobian(model, x)  # float32 model: computed on a float64 copy
        assert j.shape == (6 * c, sum(p.numel() for p in model.parameters())) and j.dtype == np.float64
        assert np.allclose(j, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
        assert np.allclose(st.jacobian(model, x, chunk=4), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
        kref = ref @ ref.T
        for budget in (1 << 28, 600):  # whole tensors, and sample chunks
            k = st.gram(model, x, max_block_bytes=budget)
            assert np.allclose(k, kref, rtol=0, atol=1e-12 * np.abs(kref).max())
    # Parameters that do not require grad are left out.
    model = mlp(4, 2, seed=5)
    model[0].weight.requires_grad_(False)
    ref = naive_jacobian(model.double(), x.double())
    assert np.allclose(st.jacobian(model, x), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def linear_minimum(n=8, d=12, c=4):
    """A linear model at an interpolating minimum (least squares, n <= d)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, c, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(d, c, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    return model, x, y


def test_analyze_reports_the_library_numbers_in_pytorch_units():
    model, x, y = linear_minimum()
    c = y.shape[1]
    rep = st.analyze(model, x, y, batches=[1, 2, 8])
    g = sgdstab.Geometry.from_jacobian(st.jacobian(model, x), c)
    for pt in rep.points:
        ours = sgdstab.threshold(g, pt["batch"]).eta_star
        assert math.isclose(pt["eta_star_sgdstab"], ours, rel_tol=1e-12)
        assert math.isclose(pt["eta_star"], c / 2 * ours, rel_tol=1e-12)
    assert math.isclose(rep.eta_gd, c / 2 * g.eta_gd, rel_tol=1e-12)
    assert rep.is_minimum and rep.loss == "mse_mean" and rep.lr_factor == c / 2
    same = st.analyze(model, x, y, batches=[2], loss="sgdstab", use_gram=True)
    assert math.isclose(same.points[0]["eta_star"], sgdstab.threshold(g, 2).eta_star, rel_tol=1e-10)
    v = st.analyze(model, x, y, batches=[2], lr=0.5 * rep.points[1]["eta_star"], batch=2).verdict
    assert v["stable"] and v["rho"] < 1 and v["converged"]
    # the verdict's eta* is the point's; radius=False: no rho, the same verdict from eta*
    eta2 = st.analyze(model, x, y, batches=[2]).points[0]["eta_star"]
    for f, stable in ((0.9, True), (1.1, False)):
        v = st.analyze(model, x, y, batches=[2], lr=f * eta2, batch=2).verdict
        w = st.analyze(model, x, y, batches=[2], lr=f * eta2, batch=2, radius=False).verdict
        assert v["decided_by"] == "rho" and v["stable"] == stable and (v["rho"] < 1) == stable
        assert w["decided_by"] == "eta_star" and w["rho"] is None and w["stable"] == stable and w["converged"]
        assert w["eta_star"] == v["eta_star"] == eta2
    assert rep.to_dict()["points"] == rep.points and "geometry" not in rep.to_dict()


def test_analyze_refuses_a_point_that_is_not_a_minimum():
    model, x, y = linear_minimum()
    with torch.no_grad():
        model.weight.add_(0.1)
    with pytest.raises(ValueError, match="not an interpolating minimum"):
        st.analyze(model, x, y, batches=[2])
    rep = st.analyze(model, x, y, batches=[2], allow_non_minimum=True)
    assert not rep.is_minimum and rep.max_residual > 1e-3
    with pytest.raises(ValueError, match="loss"):
        st.analyze(model, x, y, loss="mse_sum")
    with pytest.raises(ValueError, match="targets"):
        st.analyze(model, x, y[:, :2])
    with pytest.raises(TypeError, match="nn.Module"):
        st.jacobian(lambda t: t, x)


def perturbed_linear(x, y, w_star, seed):
    """The seeded generator and a linear model at w* plus a 1e-3 perturbation in range(H) (rows in span(x_i))."""
    n, c = y.shape
    gen = torch.Generator().manual_seed(seed)
    delta = torch.randn(c, n, generator=gen, dtype=torch.float64) @ x
    delta *= 1e-3 / delta.norm()
    m = torch.nn.Linear(x.shape[1], c, bias=False).double()
    with torch.no_grad():
        m.weight.copy_(w_star + delta)
    return gen, m


def run_steps(m, opt, loss, x, y, w_star, scale, batch, gen, steps):
    """Steps opt on loss over batches of `batch` drawn without replacement; returns |w_T - w*| / scale,
    stopping early once it passes 1e6 (or is not finite)."""
    n = x.shape[0]
    ratio = 1.0
    for _ in range(steps):
        idx = torch.randperm(n, generator=gen)[:batch]
        opt.zero_grad()
        loss(m(x[idx]), y[idx]).backward()
        opt.step()
        ratio = ((m.weight - w_star).norm() / scale).item()
        if not math.isfinite(ratio) or ratio > 1e6:
            break
    return ratio


def run_sgd(x, y, w_star, lr, batch, seed, beta=0.0, nesterov=False, steps=2000):
    """torch.optim.SGD (momentum beta, nesterov) with MSELoss(mean), batches drawn without replacement, from
    w* plus a 1e-3 perturbation in range(H); returns |w_T - w*| / |w_0 - w*|."""
    n, c = y.shape
    gen, m = perturbed_linear(x, y, w_star, seed)
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=beta, nesterov=nesterov)
    return run_steps(m, opt, torch.nn.MSELoss(reduction="mean"), x, y, w_star, 1e-3, batch, gen, steps)


def test_mse_conversion_against_torch_optim_sgd():
    # C = 4: the conversion factor C/2 = 2 is not 1, so a missing or doubled
    # factor moves 0.9 eta* to 1.8 eta* or 0.45 eta* and flips an outcome.
    # Every one of 5 seeded runs must return (|delta| shrinks by 1e3) below and
    # escape (grows by 1e6) above: measured margins are ~1e-9 and >1e6.
    model, x, y = linear_minimum()
    w_star = model.weight.detach().clone()
    for batch in (1, 2):
        eta = st.analyze(model, x, y, batches=[batch]).points[0]["eta_star"]
        below = [run_sgd(x, y, w_star, 0.9 * eta, batch, seed) for seed in range(5)]
        above = [run_sgd(x, y, w_star, 1.3 * eta, batch, seed) for seed in range(5)]
        assert max(below) < 1e-3, below
        assert all(not (r <= 1e6) for r in above), above  # NaN or inf count as escaped


def test_one_step_of_torch_optim_sgd_with_weight_decay_is_the_map_of_theory():
    # PyTorch's SGD(lr, weight_decay=wd) with MSELoss(mean) on a linear model
    # takes exactly delta' = (1 - eta lam) delta - eta H_xi delta - eta lam w*
    # (theory/weight_decay.md, eq. 2) with eta = (2/C) lr and lam = wd C / 2.
    model, x, y = linear_minimum()
    n, c = y.shape
    w_star = model.weight.detach().clone()
    lr_t, wd = 0.03, 0.4
    eta, lam = sgdstab.from_torch_lr(lr_t, c), wd * c / 2
    gen = torch.Generator().manual_seed(4)
    for batch in ([1, 4], [0, 2, 5, 7], [6]):
        delta = torch.randn(c, x.shape[1], generator=gen, dtype=torch.float64) * 1e-2
        m = torch.nn.Linear(x.shape[1], c, bias=False).double()
        with torch.no_grad():
            m.weight.copy_(w_star + delta)
        opt = torch.optim.SGD(m.parameters(), lr=lr_t, weight_decay=wd)
        opt.zero_grad()
        torch.nn.MSELoss(reduction="mean")(m(x[batch]), y[batch]).backward()
        opt.step()
        xb = x[batch]
        h = xb.T @ xb / len(batch)
        d = delta.T
        d_new = (1 - eta * lam) * d - eta * h @ d - eta * lam * w_star.T
        got = (m.weight.detach() - w_star).T
        assert torch.allclose(got, d_new, rtol=0, atol=1e-15), (got - d_new).abs().max()


def run_sgd_weight_decay(x, y, w_star, lr, wd, batch, seed, steps=3000, momentum=0.0):
    """torch.optim.SGD(lr, weight_decay=wd, momentum=momentum) with MSELoss(mean) from w* plus a 1e-3 perturbation in range(H);
    returns max_t |w_t - w*| over the run (the decay pulls w towards a ridge point and the batches keep
    it fluctuating there: bounded below eta*, growing without bound above)."""
    n, c = y.shape
    gen, m = perturbed_linear(x, y, w_star, seed)
    opt = torch.optim.SGD(m.parameters(), lr=lr, weight_decay=wd, momentum=momentum)
    loss = torch.nn.MSELoss(reduction="mean")
    worst = 0.0
    for _ in range(steps):
        idx = torch.randperm(n, generator=gen)[:batch]
        opt.zero_grad()
        loss(m(x[idx]), y[idx]).backward()
        opt.step()
        dist = (m.weight - w_star).norm().item()
        worst = max(worst, dist) if math.isfinite(dist) else math.inf
        if worst > 1e6:
            break
    return worst


def test_weight_decay_threshold_against_torch_optim_sgd():
    # lam = wd C / 2 = 0.3 lambda_max (torch units: wd = 0.3 lambda_max of
    # MSELoss's Hessian). With weight decay the runs do not return to w*:
    # the decay pulls them towards a ridge point and the batches keep them
    # fluctuating there, so "stays" is a bounded distance and "escapes" a
    # growing one. Measured (3000 steps, seeds 0-3): max |w_t - w*| / |w*| at
    # 0.9 eta* 0.9-1.5; at 1.3 eta* 75-14 000 (B = 2) and > 6 800 (B = 4).
    # At B = 1 the excursions above eta* are slower (18-240 |w*| in 3000
    # steps: mean-square growth carried by rare batch sequences), so B = 1 is
    # left to the exact tests. The units themselves are checked exactly by
    # the one-step test above.
    model, x, y = linear_minimum()
    n, c = y.shape
    w_star = model.weight.detach().clone()
    lam_max = st.analyze(model, x, y, batches=[n]).lambda_max  # in MSELoss units: torch's Hessian
    wd = 0.3 * lam_max
    rep = st.analyze(model, x, y, batches=[2, 4], weight_decay=wd)
    assert rep.weight_decay == wd and rep.converged
    assert math.isclose(rep.eta_gd, 2 / (lam_max + wd), rel_tol=1e-9)  # GD with decay, in torch units
    plain = st.analyze(model, x, y, batches=[2, 4])
    # Here the decay raises eta* at B = 2 and lowers it at B = 4 (theory/weight_decay.md, section 4).
    assert rep.points[0]["eta_star"] > plain.points[0]["eta_star"]
    assert rep.points[1]["eta_star"] < plain.points[1]["eta_star"]
    scale = w_star.norm().item()
    for point in rep.points:
        eta = point["eta_star"]
        below = [run_sgd_weight_decay(x, y, w_star, 0.9 * eta, wd, point["batch"], s) for s in range(5)]
        above = [run_sgd_weight_decay(x, y, w_star, 1.3 * eta, wd, point["batch"], s) for s in range(5)]
        assert max(below) < 5 * scale, (below, scale)
        assert min(above) > 20 * scale, (above, scale)


def test_momentum_with_weight_decay_against_torch_optim_sgd():
    # torch.optim.SGD(momentum=0.5, weight_decay=wd): the buffer takes grad + wd theta
    # (theory/momentum.md, section 8). The report is the library's answer in torch units
    # (lambda = wd * lr_factor), and real runs stay at 0.9 eta* and leave at 1.3 eta*.
    model, x, y = linear_minimum()
    n, c = y.shape
    w_star = model.weight.detach().clone()
    lam_max = st.analyze(model, x, y, batches=[n]).lambda_max
    wd, beta = 0.3 * lam_max, 0.5
    rep = st.analyze(model, x, y, batches=[4], momentum=beta, weight_decay=wd)
    assert rep.converged and rep.weight_decay == wd and rep.momentum == beta
    lib = sgdstab.threshold(rep.geometry, 4, momentum=beta, weight_decay=wd * rep.lr_factor)
    assert lib.converged and lib.to_dict()["weight_decay"] == wd * rep.lr_factor
    assert math.isclose(rep.points[0]["eta_star"], rep.lr_factor * lib.eta_star, rel_tol=1e-12)
    # The decay changes the answer (not silently ignored), and eta_mean has lambda_max + lambda.
    assert not math.isclose(lib.eta_star, sgdstab.threshold(rep.geometry, 4, momentum=beta).eta_star, rel_tol=1e-3)
    assert math.isclose(lib.eta_mean, 2 * (1 + beta) / (rep.geometry.lambda_max + wd * rep.lr_factor), rel_tol=1e-12)
    scale = w_star.norm().item()
    eta = rep.points[0]["eta_star"]
    below = [run_sgd_weight_decay(x, y, w_star, 0.9 * eta, wd, 4, s, steps=2000, momentum=beta) for s in range(3)]
    above = [run_sgd_weight_decay(x, y, w_star, 1.3 * eta, wd, 4, s, steps=2000, momentum=beta) for s in range(3)]
    assert max(below) < 5 * scale, (below, scale)
    assert min(above) > 20 * scale, (above, scale)


def test_analyze_reads_a_torch_optim_sgd():
    # optimizer= takes lr, momentum, nesterov and weight_decay from torch.optim.SGD:
    # the same report as the keywords, and clear errors for what it cannot analyze.
    model, x, y = linear_minimum()
    for kw in ({"lr": 0.05}, {"lr": 0.05, "weight_decay": 0.2}, {"lr": 0.02, "momentum": 0.5, "nesterov": True},
               {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.2}):
        opt = torch.optim.SGD(model.parameters(), **kw)
        got = st.analyze(model, x, y, batches=[1, 3], batch=2, optimizer=opt)
        want = st.analyze(model, x, y, batches=[1, 3], batch=2, **kw)
        assert [p["eta_star"] for p in got.points] == [p["eta_star"] for p in want.points]
        assert got.verdict["rho"] == want.verdict["rho"] and got.verdict["lr"] == kw["lr"]
        assert got.momentum == kw.get("momentum", 0.0) and got.weight_decay == kw.get("weight_decay", 0.0)
    with pytest.raises(ValueError, match="do not pass them"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.SGD(model.parameters(), lr=0.1), lr=0.1, batch=1)
    with pytest.raises(ValueError, match="dampening"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5,
                                                                       dampening=0.1))
    with pytest.raises(NotImplementedError, match="Adamax"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.Adamax(model.parameters(), lr=1e-3))


def frozen_adam(params, v, lr, beta1, kind="adam", wd=0.0):
    """A torch.optim Adam / AdamW (decoupled weight decay wd) / RMSprop whose second-moment state is v
    (beta2 / alpha = 1 - 1e-6, step 1e7: the preconditioner moves by < 0.2 % over a test run and the bias
    corrections are 1), first moment zero."""
    (w,) = params
    if kind in ("adam", "adamw"):
        # kind "adam" with wd: Adam's own L2 decay (grad + wd theta before the division by P).
        opt = (torch.optim.Adam([w], lr=lr, betas=(beta1, 1 - 1e-6), weight_decay=wd) if kind == "adam" else
               torch.optim.AdamW([w], lr=lr, betas=(beta1, 1 - 1e-6), weight_decay=wd))
        opt.state[w] = {"step": torch.tensor(1e7), "exp_avg": torch.zeros_like(w), "exp_avg_sq": v.clone()}
    else:
        opt = torch.optim.RMSprop([w], lr=lr, alpha=1 - 1e-6, momentum=beta1, weight_decay=wd)
        opt.state[w] = {"step": torch.tensor(1e7), "square_avg": v.clone(),
                        "momentum_buffer": torch.zeros_like(w)}
    return opt


def run_adam(x, y, w_star, v, lr, beta1, batch, seed, kind="adam", steps=3000, wd=0.0):
    """A real torch Adam (or RMSprop with momentum beta1) run with MSELoss(mean) and the state v frozen as in
    frozen_adam, from w* plus a 1e-10 perturbation in P^{-1} range(H) (the subspace Adam's update moves in);
    returns |w_T - w*| / |w_0 - w*|. The perturbation is small so that an escape by 1e6 leaves v as it was:
    from 1e-3 the gradients of the escaping run feed (1 - beta2) g^2 back into v, P grows and the escape
    stalls near 1e3 (measured: 100-1000) -- real Adam's own stabilization, outside the frozen model."""
    n, c = y.shape
    gen = torch.Generator().manual_seed(seed)
    pre = v.sqrt() + 1e-8  # torch's default eps
    delta = (torch.randn(c, n, generator=gen, dtype=torch.float64) @ x) / pre
    delta *= 1e-10 / delta.norm()
    m = torch.nn.Linear(x.shape[1], c, bias=False).double()
    with torch.no_grad():
        m.weight.copy_(w_star + delta)
    opt = frozen_adam([m.weight], v, lr, beta1, kind, wd)
    return run_steps(m, opt, torch.nn.MSELoss(reduction="mean"), x, y, w_star, 1e-10, batch, gen, steps)


@pytest.mark.parametrize("kind,beta1,batch", [("adam", 0.9, 8), ("adam", 0.5, 1), ("adam", 0.5, 2),
                                              ("rmsprop", 0.0, 1), ("rmsprop", 0.5, 2)])
def test_adam_and_rmsprop_thresholds_against_torch_optim(kind, beta1, batch):
    # analyze(optimizer=Adam/RMSprop) reads v from the optimizer's state and
    # answers in its lr: every seeded real run returns at 0.9 eta* and escapes
    # at 1.3 eta*. At B = n (Adam, beta1 = 0.9) the run is deterministic and
    # eta* is Cohen et al.'s 38 / lambda_max(P^{-1} H) in MSELoss's units.
    # Measured (seeds 0-4, AMD EPYC): below max 3e-5..9e-5, above all > 1e6.
    # At beta1 = 0.9 and B = 2 the runs above eta* return (max 4e-5), as
    # heavy-ball runs at beta = 0.9 do: mean-square growth carried by rare
    # batch sequences (heavy tails) is not almost-sure divergence; that case
    # is left to the exact tests (tests/test_adaptive.cpp).
    model, x, y = linear_minimum()
    n, c = y.shape
    w_star = model.weight.detach().clone()
    g = torch.Generator().manual_seed(7)
    v = 1e-2 * torch.exp(1.5 * torch.randn(w_star.shape, generator=g, dtype=torch.float64))
    rep = st.analyze(model, x, y, batches=[batch], optimizer=frozen_adam([model.weight], v, 1e-3, beta1, kind))
    assert rep.converged and rep.optimizer == kind
    eta = rep.points[0]["eta_star"]
    if batch == n:
        xs = x.numpy()
        h_torch = np.kron(np.eye(c), xs.T @ xs / n) * 2 / c  # MSELoss(mean)'s Hessian on the row-major weight
        bc2 = 1 - (1 - 1e-6) ** (1e7 + 1)  # torch's second bias correction at the next step (1 - 4.5e-5)
        pre = ((v / bc2).sqrt() + 1e-8).reshape(-1).numpy()
        lam = np.linalg.eigvals(h_torch / pre[:, None]).real.max()
        assert math.isclose(eta, (2 + 2 * beta1) / ((1 - beta1) * lam), rel_tol=1e-8)
    seeds = range(1) if batch == n else range(5)
    below = [run_adam(x, y, w_star, v, 0.9 * eta, beta1, batch, s, kind) for s in seeds]
    above = [run_adam(x, y, w_star, v, 1.3 * eta, beta1, batch, s, kind) for s in seeds]
    assert max(below) < 1e-3, below
    assert all(not (r <= 1e6) for r in above), above


def test_analyze_reads_adaptive_optimizers_and_refuses_what_it_cannot():
    model, x, y = linear_minimum()
    v = torch.full_like(model.weight, 0.04)
    opt = frozen_adam([model.weight], v, 1e-3, 0.9)
    got = st.analyze(model, x, y, batches=[2], batch=2, optimizer=opt)
    # The same as the library on J P^{-1/2}, by hand: P = sqrt(v) + eps, MSELoss's factor C/2.
    c = y.shape[1]
    bc2 = 1 - (1 - 1e-6) ** (1e7 + 1)  # torch's second bias correction at the next step
    gp = sgdstab.Geometry.from_jacobian(sgdstab.precondition(st.jacobian(model, x),
                                                             ((v / bc2).sqrt() + 1e-8).reshape(-1)), c)
    want = sgdstab.adam_threshold(gp, 2, beta1=0.9).eta_star * c / 2
    assert math.isclose(got.points[0]["eta_star"], want, rel_tol=1e-12)
    assert got.verdict["lr"] == 1e-3 and got.beta1 == 0.9
    with pytest.raises(NotImplementedError, match="weight_decay=0.1 is not analyzed"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.RMSprop(model.parameters(), momentum=0.5,
                                                                           weight_decay=0.1))
    with pytest.raises(NotImplementedError, match="weight_decay=0.1 is not covered"):
        st.covariance(model, x, y, batch=2, optimizer=frozen_adam([model.weight], v, 1e-3, 0.9, wd=0.1))
    with pytest.raises(ValueError, match="at least one optimizer step"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))
    with pytest.raises(NotImplementedError, match="centered"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.RMSprop(model.parameters(), centered=True))
    with pytest.raises(NotImplementedError, match="Adagrad"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.Adagrad(model.parameters()))
    with pytest.raises(NotImplementedError, match="Rprop"):
        st.analyze(model, x, y, batches=[1], optimizer=torch.optim.Rprop(model.parameters()))


def test_analyze_maps_the_adam_state_of_several_tensors_to_the_jacobian_columns():
    # An MLP with biases (four tensors), Adam's state after real steps, the
    # optimizer's groups listed in reverse order: P is assembled here by hand
    # in named_parameters() order with torch's bias correction at step t + 1
    # and compared with what analyze used (eta* at B = n is the closed form
    # (2 + 2 beta1) / ((1 - beta1) lambda_max(P^{-1} H)) in MSELoss units).
    torch.manual_seed(1)
    n, d, c = 6, 3, 2
    x = torch.randn(n, d, dtype=torch.float64)
    y = torch.randn(n, c, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(d, 4), torch.nn.Tanh(), torch.nn.Linear(4, c)).double()
    params = list(model.parameters())
    opt = torch.optim.Adam([{"params": params[2:]}, {"params": params[:2]}], lr=1e-3, betas=(0.8, 0.99))
    for _ in range(7):
        opt.zero_grad()
        torch.nn.MSELoss()(model(x), y).backward()
        opt.step()
    rep = st.analyze(model, x, y, batches=[n], optimizer=opt, allow_non_minimum=True)
    t = 7 + 1
    pre = torch.cat([((opt.state[p]["exp_avg_sq"] / (1 - 0.99**t)).sqrt() + 1e-8).reshape(-1)
                     for _, p in model.named_parameters()]).numpy()
    jac = st.jacobian(model, x)
    h = jac.T @ jac / n * 2 / c  # MSELoss(mean)'s Gauss-Newton Hessian
    lam = np.linalg.eigvals(h / pre[:, None]).real.max()
    bc1 = 1 - 0.8**t
    assert math.isclose(rep.points[0]["eta_star"], bc1 * (2 + 2 * 0.8) / ((1 - 0.8) * lam), rel_tol=1e-8)
    assert rep.optimizer == "adam" and math.isclose(rep.bias_correction1, bc1)


def test_cross_entropy_one_step_is_the_map_of_theory():
    # A linear classifier (logits W x): the Jacobian of one torch.optim.SGD
    # step with CrossEntropyLoss(mean) on a batch is exactly I - lr H_B with
    # H_B = (1/B) sum J~_i^T J~_i, J~ = S^{1/2} J (theory/loss_curvature.md,
    # eq. 1-2; the model is linear, so the Gauss-Newton part is the Hessian).
    g = torch.Generator().manual_seed(2)
    n, d, c = 6, 5, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    model = torch.nn.Linear(d, c, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(c, d, generator=g, dtype=torch.float64))
    probs = torch.softmax(model(x), dim=1).detach().numpy()
    jt = sgdstab.apply_curvature(st.jacobian(model, x), sgdstab.softmax_curvature(probs), c)
    lr = 0.3
    w0 = model.weight.detach().clone()
    try:  # PyTorch >= 2.0
        from torch.func import grad, jacrev
    except ImportError:  # PyTorch 1.13 (functorch)
        from functorch import grad, jacrev
    for batch in ([0, 3], [1, 2, 4, 5], [5]):
        def step(w):
            return w - lr * grad(lambda ww: torch.nn.functional.cross_entropy(x[batch] @ ww.reshape(c, d).T,
                                                                              labels[batch]))(w)
        jac = jacrev(step)(w0.reshape(-1)).detach().numpy()
        rows = np.concatenate([np.arange(i * c, (i + 1) * c) for i in batch])
        hb = jt[rows].T @ jt[rows] / len(batch)
        np.testing.assert_allclose(jac, np.eye(c * d) - lr * hb, rtol=0, atol=1e-13)
    rep = st.analyze(model, x, labels, batches=[1, n], loss="cross_entropy")
    assert rep.loss == "cross_entropy" and rep.lr_factor == 1.0 and not rep.is_minimum
    assert math.isclose(rep.points[1]["eta_star"], 2 / np.linalg.eigvalsh(jt.T @ jt / n).max(), rel_tol=1e-9)
    one_hot = torch.nn.functional.one_hot(labels, c).double()
    rep2 = st.analyze(model, x, one_hot, batches=[1, n], loss="cross_entropy")
    assert [p["eta_star"] for p in rep2.points] == [p["eta_star"] for p in rep.points]
    with pytest.raises(ValueError, match="class indices"):
        st.analyze(model, x, labels + c, batches=[1], loss="cross_entropy")


def soft_label_minimum(n=6, d=9, c=3):
    """A linear classifier at an interpolating minimum of cross-entropy with soft targets: t_i =
    softmax(W* x_i) (n <= d), so every per-sample gradient x_i (p_i - t_i) vanishes at W*."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_star = torch.randn(c, d, generator=g, dtype=torch.float64)
    targets = torch.softmax(x @ w_star.T, dim=1)
    model = torch.nn.Linear(d, c, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w_star)
    return model, x, targets


def run_sgd_cross_entropy(x, t, w_star, lr, batch, seed, steps=6000):
    """torch.optim.SGD with CrossEntropyLoss(mean) on probability targets from W* plus a 1e-10 perturbation
    in range(G) (rows in span(x), columns summing to zero: the softmax ignores a common shift of the
    logits); returns |W_T - W*| / |W_0 - W*|."""
    n, c = t.shape
    gen = torch.Generator().manual_seed(seed)
    delta = torch.randn(c, n, generator=gen, dtype=torch.float64)
    delta = (delta - delta.mean(dim=0, keepdim=True)) @ x
    delta *= 1e-10 / delta.norm()
    m = torch.nn.Linear(x.shape[1], c, bias=False).double()
    with torch.no_grad():
        m.weight.copy_(w_star + delta)
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    return run_steps(m, opt, torch.nn.CrossEntropyLoss(reduction="mean"), x, t, w_star, 1e-10, batch, gen, steps)


@pytest.mark.parametrize("batch", [1, 2, 6])
def test_cross_entropy_threshold_against_torch_optim_sgd(batch):
    # Soft targets make W* an interpolating minimum of cross-entropy (no
    # gradient noise there), so the real runs test the threshold itself:
    # every seeded run returns at 0.9 eta* and escapes at 1.3 eta*, with
    # eta* from analyze(loss="cross_entropy") in torch's lr (B = 6 = n: GD).
    # The softmax's curvature makes G's spectrum wide, so returning is slow:
    # measured (6000 steps, seeds 0-4, AMD EPYC) |W - W*| shrinks to 0.017-0.027
    # (B = 1), 0.004-0.006 (B = 2), 0.0067 (GD) of its start, and grows past
    # 1e6 at 1.3 eta* in every run. A lr factor of C/2 = 1.5 (MSELoss's) in
    # place of 1 would move 0.9 eta* to 1.35 eta* and flip the outcome.
    model, x, t = soft_label_minimum()
    w_star = model.weight.detach().clone()
    rep = st.analyze(model, x, t, batches=[batch], loss="cross_entropy")
    assert rep.converged and rep.max_residual < 1e-15
    eta = rep.points[0]["eta_star"]
    seeds = range(1) if batch == x.shape[0] else range(5)
    below = [run_sgd_cross_entropy(x, t, w_star, 0.9 * eta, batch, s) for s in seeds]
    above = [run_sgd_cross_entropy(x, t, w_star, 1.3 * eta, batch, s) for s in seeds]
    assert max(below) < 0.1, below
    assert all(not (r <= 1e6) for r in above), above


@pytest.mark.parametrize("nesterov", [False, True])
def test_one_momentum_step_of_torch_optim_sgd_is_the_linear_map_of_theory(nesterov):
    # PyTorch's SGD(momentum=beta, nesterov=...) with MSELoss(mean) on a linear
    # model, from any (delta, v), takes exactly the step z' = M_xi z of
    # theory/momentum.md eq. 1 with u = lr_torch * v and eta = (2/C) lr_torch.
    model, x, y = linear_minimum()
    n, c = y.shape
    w_star = model.weight.detach().clone()
    beta, lr_t = 0.7, 0.03
    eta = sgdstab.from_torch_lr(lr_t, c)
    gen = torch.Generator().manual_seed(3)
    for batch in ([1, 4], [0, 2, 5, 7], [6]):
        delta = torch.randn(c, x.shape[1], generator=gen, dtype=torch.float64) * 1e-2
        v = torch.randn(c, x.shape[1], generator=gen, dtype=torch.float64) * 1e-2
        m = torch.nn.Linear(x.shape[1], c, bias=False).double()
        with torch.no_grad():
            m.weight.copy_(w_star + delta)
        opt = torch.optim.SGD(m.parameters(), lr=lr_t, momentum=beta, nesterov=nesterov)
        opt.zero_grad()
        torch.nn.MSELoss(reduction="mean")(m(x[batch]), y[batch]).backward()
        opt.state[m.weight]["momentum_buffer"] = v.clone()
        opt.step()
        # Theory: per output row k, delta_k in R^d, H_xi = (1/B) sum x_i x_i^T (the same for every output).
        xb = x[batch]
        h = xb.T @ xb / len(batch)
        d, u = delta.T, lr_t * v.T  # columns: outputs
        if nesterov:
            d_new = d - eta * (1 + beta) * h @ d - beta**2 * u
        else:
            d_new = d - eta * h @ d - beta * u
        u_new = beta * u + eta * h @ d
        got_d = (m.weight.detach() - w_star).T
        got_u = lr_t * opt.state[m.weight]["momentum_buffer"].T
        assert torch.allclose(got_d, d_new, rtol=0, atol=1e-15), (got_d - d_new).abs().max()
        assert torch.allclose(got_u, u_new, rtol=0, atol=1e-15), (got_u - u_new).abs().max()


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_threshold_against_torch_optim_sgd(nesterov):
    # beta = 0.5, B = 1: every seeded run returns at 0.9 eta* and escapes at
    # 1.3 eta* (measured margins ~1e-12 and 1e6). At beta = 0.9 typical runs
    # return even above eta*: mean-square instability (a growing second
    # moment, heavy tails) is not almost-sure divergence; docs/momentum.md says so.
    model, x, y = linear_minimum()
    w_star = model.weight.detach().clone()
    rep = st.analyze(model, x, y, batches=[1], momentum=0.5, nesterov=nesterov)
    eta = rep.points[0]["eta_star"]
    assert rep.momentum == 0.5 and rep.nesterov == nesterov and rep.converged
    below = [run_sgd(x, y, w_star, 0.9 * eta, 1, s, 0.5, nesterov, steps=3000) for s in range(5)]
    above = [run_sgd(x, y, w_star, 1.3 * eta, 1, s, 0.5, nesterov, steps=3000) for s in range(5)]
    assert max(below) < 1e-3, below
    assert all(not (r <= 1e6) for r in above), above


def test_torch_model_products_equal_the_jacobian():
    # J V, J^T U and the blocks J_i J_i^T of TorchModel (jvp, vjp, C backward
    # passes per sample) against the per-sample autograd loop of the test.
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    for c in (1, 3):
        model = mlp(4, c, seed=10 + c)
        ref = naive_jacobian(model.double(), x.double())
        tm = st.TorchModel(model, x)
        assert (tm.samples(), tm.outputs(), tm.params()) == (5, c, ref.shape[1])
        rng = np.random.default_rng(c)
        v, u = rng.standard_normal((ref.shape[1], 3)), rng.standard_normal((5 * c, 2))
        scale = np.abs(ref).max()
        assert np.allclose(tm.jacobian_times(v), ref @ v, rtol=0, atol=1e-12 * scale * np.abs(v).sum(0).max())
        assert np.allclose(tm.jacobian_transpose_times(u), ref.T @ u, rtol=0, atol=1e-12 * scale * np.abs(u).sum(0).max())
        grams = tm.sample_grams()
        for i in range(5):
            block = ref[i * c:(i + 1) * c] @ ref[i * c:(i + 1) * c].T
            assert np.allclose(grams[i * c:(i + 1) * c], block, rtol=0, atol=1e-12 * scale ** 2)
        with pytest.raises(ValueError, match="jacobian_times"):
            tm.jacobian_times(np.ones((3, 1)))


def linear_nets():
    """Two networks of nn.Linear layers for the layer-wise paths: in-place
    ReLU after a layer and a bias-free layer (C = 3); a frozen bias (C = 2)."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(inplace=True), torch.nn.Linear(6, 5, bias=False),
                              torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    frozen = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()
    frozen[0].bias.requires_grad_(False)
    return net, frozen


class ScaledTanh(torch.nn.Module):
    """A parameter outside nn.Linear: the layer-wise paths must refuse it."""

    def __init__(self):
        super().__init__()
        self.lin, self.s = torch.nn.Linear(4, 2), torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, z):
        return self.s * torch.tanh(self.lin(z))


def test_layer_wise_sample_grams_equal_the_per_sample_jacobian():
    # The nn.Linear fast path of TorchModel.sample_grams (C backward passes
    # per chunk, <d_ik, d_il>(|a_i|^2 + 1) per layer) against J_i J_i^T of the
    # per-sample autograd loop: in-place ReLU after a layer, a bias-free
    # layer, a frozen layer, chunks that do not divide n; and models it must
    # refuse (a parameter outside nn.Linear, a layer run twice), which take
    # the loop and still agree.
    torch.manual_seed(5)
    x = torch.randn(7, 4, dtype=torch.float64)
    net, frozen = linear_nets()

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

        def forward(self, z):
            return self.b(torch.tanh(self.a(torch.tanh(self.a(z)))))

    for model, fast in ((net, True), (frozen, True), (Twice().double(), False), (ScaledTanh().double(), False)):
        tm = st.TorchModel(model, x)
        names = tm._names
        assert (st._linear_layers(tm._work, names) is not None) == (not isinstance(model, ScaledTanh))
        ref = naive_jacobian(tm._work, x)
        c = tm.outputs()
        got = st._linear_sample_grams(tm._work, x, names, c, chunk=3)
        assert (got is not None) == fast
        for grams in [tm.sample_grams()] + ([got] if fast else []):
            for i in range(7):
                block = ref[i * c:(i + 1) * c] @ ref[i * c:(i + 1) * c].T
                assert np.allclose(grams[i * c:(i + 1) * c], block, rtol=0, atol=1e-12 * max(1.0, np.abs(block).max()))


def test_layer_wise_gram_equals_the_jacobian_product():
    # The nn.Linear fast path of gram() (per layer (D D^T) * kron(A A^T + 1,
    # ones(C, C))) against J J^T of the per-sample autograd Jacobian, off the
    # diagonal blocks too: in-place ReLU, a bias-free layer, a frozen bias,
    # chunks that do not divide n; a model it must refuse (a parameter
    # outside nn.Linear) takes the per-tensor path and still agrees.
    torch.manual_seed(6)
    x = torch.randn(7, 4, dtype=torch.float64)
    net, frozen = linear_nets()

    for model, fast in ((net, True), (frozen, True), (ScaledTanh().double(), False)):
        work, xs, names = st._prepare(model, x, torch.float64)
        j = naive_jacobian(work, x)
        want = j @ j.T
        tol = 1e-12 * max(1.0, np.abs(want).max())
        c = want.shape[0] // 7
        got = st._linear_gram(work, xs, names, c, chunk=3)
        assert (got is not None) == fast
        if fast:
            assert np.allclose(got, want, rtol=0, atol=tol)
        assert np.allclose(st.gram(model, x), want, rtol=0, atol=tol)

    class Centered(torch.nn.Module):  # samples interact (as batch norm in training mode does)
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 5), torch.nn.Linear(5, 2)

        def forward(self, z):
            h = self.a(z)
            return self.b(torch.tanh(h - h.mean(0)))

    model = Centered().double()
    work, xs, names = st._prepare(model, x, torch.float64)
    with pytest.warns(UserWarning, match="disagrees with the Jacobian rows"):
        assert st._linear_gram(work, xs, names, 2) is None


def test_stability_chooses_the_engine_and_says_which():
    # auto: exact up to exact_max_rank (points carry eta_low = eta_high =
    # eta*), the band beyond it or beyond the memory limit; forced engines;
    # the band contains the exact eta*; bad arguments are refused.
    model, x, y = linear_minimum()
    n, c = y.shape
    p = sum(t.numel() for t in model.parameters())
    r = min(n * c, p)
    exact = st.stability(model, x, y, batches=[1, 3, 8])
    assert exact.engine == "exact" and f"= {r} <= exact_max_rank 4096" in exact.engine_reason
    # The reference: the library's threshold on the Jacobian of a per-sample
    # autograd loop, in MSELoss units (C/2 times the library's).
    g = sgdstab.Geometry.from_jacobian(naive_jacobian(model, x), c)
    want = [c / 2 * sgdstab.threshold(g, b, "without").eta_star for b in (1, 3, 8)]
    assert len(exact.points) == 3
    for pt, eta in zip(exact.points, want):
        assert pt["eta_low_kind"] == "certified" and pt["eta_high"] == pt["eta_star"]
        assert pt["eta_low"] <= eta * (1 + 1e-9) and math.isclose(pt["eta_high"], eta, rel_tol=1e-8)
        assert pt["eta_low"] >= eta * (1 - 1e-6)  # the solver's bracket is tight
    opts = {"subspace": 6, "lanczos_steps": 10}
    band = st.stability(model, x, y, batches=[1, 3, 8], exact_max_rank=r - 1, band_options=opts)
    assert band.engine == "band" and band.engine_reason == f"rank bound min(nC, p) = {r} > exact_max_rank {r - 1}"
    assert len(band.points) == 3
    for pt, eta in zip(band.points, want):
        assert pt["eta_low_certified"] <= eta * (1 + 1e-9) <= pt["eta_high"] * (1 + 2e-9)
    small = st.stability(model, x, y, batches=[2], memory_limit=1000.0, band_options=opts)
    assert small.engine == "band" and "more than the" in small.engine_reason
    assert st.stability(model, x, y, batches=[2], engine="band", band_options=opts).engine_reason == "engine='band'"
    assert st.stability(model, x, y, batches=[2], engine="exact", exact_max_rank=1).engine == "exact"
    with pytest.raises(ValueError, match="options of the exact engine"):
        st.stability(model, x, y, batches=[2], engine="band", solver_options={"tolerance": 1e-8})
    with pytest.raises(ValueError, match="options of the band"):
        st.stability(model, x, y, batches=[2], engine="exact", band_options=opts)
    assert st.stability(model, x, y, batches=[2], exact_max_rank=np.int64(r)).engine == "exact"
    # analyze's own keywords in solver_options reach analyze, not the footprint's option parser
    assert st.stability(model, x, y, batches=[2], solver_options={"use_gram": True}).engine == "exact"
    for bad in ({"engine": "fast"}, {"exact_max_rank": 0}, {"exact_max_rank": True}, {"memory_limit": -1.0}):
        with pytest.raises(ValueError):
            st.stability(model, x, y, batches=[2], **bad)


def test_stability_with_momentum_runs_either_engine_around_the_same_threshold():
    # momentum=/nesterov= reach both engines: the exact points carry the
    # momentum threshold's certified bracket, the band (theory/band.md
    # section 6) contains the exact eta*; momentum in band_options is refused.
    model, x, y = linear_minimum()
    p = sum(t.numel() for t in model.parameters())
    r = min(y.numel(), p)
    for nesterov in (False, True):
        exact = st.stability(model, x, y, batches=[1, 3, 8], momentum=0.8, nesterov=nesterov)
        assert exact.engine == "exact" and exact.momentum == 0.8
        ref = st.analyze(model, x, y, batches=[1, 3, 8], momentum=0.8, nesterov=nesterov)
        band = st.stability(model, x, y, batches=[1, 3, 8], momentum=0.8, nesterov=nesterov, exact_max_rank=r - 1,
                            band_options={"delta": 0.0})
        assert band.engine == "band" and band.momentum == 0.8 and band.nesterov == nesterov
        for pe, pr, pb in zip(exact.points, ref.points, band.points):
            assert pe["eta_low"] <= pr["eta_star"] <= pe["eta_high"] and pe["eta_low"] > 0
            assert pe["eta_high"] <= pr["eta_star"] * (1 + 1e-6)
            assert pb["eta_low"] <= pr["eta_star"] * (1 + 1e-9) and pb["eta_high"] >= pr["eta_star"] * (1 - 1e-9)
    with pytest.raises(ValueError, match="give momentum= and nesterov= to stability"):
        st.stability(model, x, y, batches=[2], band_options={"momentum": 0.5})
    with pytest.raises(ValueError, match="needs momentum"):
        st.stability(model, x, y, batches=[2], nesterov=True)
    with pytest.raises(ValueError, match="give momentum= and nesterov= to stability"):
        st.stability(model, x, y, batches=[2], solver_options={"momentum": 0.5})
    with pytest.raises(ValueError, match="the band does not take"):
        st.stability(model, x, y, batches=[2], solver_options={"weight_decay": 0.1})


def test_stability_falls_back_to_the_band_when_the_exact_engine_runs_out_of_memory(monkeypatch):
    # An allocation the estimate did not foresee: auto runs the band instead,
    # says why, and gives the band's own answer; an engine named explicitly,
    # or another error, is raised.
    model, x, y = linear_minimum()
    opts = {"subspace": 6, "lanczos_steps": 10}
    want = st.band(model, x, y, batches=[1, 3], **opts)
    calls = []

    def no_memory(*args, **kwargs):
        calls.append(kwargs)
        raise MemoryError("the shared subspace needs about 9.0 GiB but only 1.0 GiB is available")

    monkeypatch.setattr(st, "analyze", no_memory)
    rep = st.stability(model, x, y, batches=[1, 3], band_options=opts)
    assert len(calls) == 1 and rep.engine == "band"
    assert rep.engine_reason == ("the exact engine ran out of memory: the shared subspace needs about 9.0 GiB "
                                 "but only 1.0 GiB is available")
    assert [(p["batch"], p["eta_low"], p["eta_high"]) for p in rep.points] == \
        [(p["batch"], p["eta_low"], p["eta_high"]) for p in want.points]
    with pytest.raises(MemoryError, match="9.0 GiB"):
        st.stability(model, x, y, batches=[1, 3], engine="exact")

    def torch_cpu_oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(st, "analyze", torch_cpu_oom)
    assert st.stability(model, x, y, batches=[1, 3], band_options=opts).engine == "band"

    def other(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(st, "analyze", other)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        st.stability(model, x, y, batches=[1, 3], band_options=opts)


def test_band_contains_the_exact_threshold_of_a_network_at_a_minimum():
    # A linear minimum (exact interpolation) and a small tanh network whose
    # last layer is fitted exactly (a minimum in those parameters): each band
    # contains analyze()'s eta*, in the same units.
    model, x, y = linear_minimum()
    rep = st.analyze(model, x, y, batches=[1, 3, 8])
    band = st.band(model, x, y, batches=[1, 3, 8], subspace=6, lanczos_steps=10, delta=1e-3)
    assert band.is_minimum and band.loss == "mse_mean" and band.lr_factor == y.shape[1] / 2
    for exact, pt in zip(rep.points, band.points):
        assert pt["batch"] == exact["batch"] and pt["converged"]
        assert pt["eta_low_certified"] <= exact["eta_star"] * (1 + 1e-9)
        assert pt["eta_high"] >= exact["eta_star"] * (1 - 1e-9)
        assert pt["eta_low_kind"] in ("certified", "probabilistic")
        assert math.isclose(pt["eta_high"], band.lr_factor * pt["eta_high_sgdstab"], rel_tol=1e-15)
    assert "results" not in band.to_dict() and band.products > 0
    with pytest.raises(ValueError, match="not an interpolating minimum"):
        st.band(model, x, y + 1.0, batches=[2])

    torch.manual_seed(3)
    n, d, c = 6, 3, 2
    xs = torch.randn(n, d, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.Tanh(), torch.nn.Linear(8, c, bias=False)).double()
    ys = torch.randn(n, c, dtype=torch.float64)
    with torch.no_grad():  # fit the last layer exactly (8 features >= 6 samples)
        feats = net[1](net[0](xs))
        net[2].weight.copy_(torch.linalg.lstsq(feats, ys).solution.T)
    exact = st.analyze(net, xs, ys, batches=[2], loss="sgdstab").points[0]["eta_star"]
    pt = st.band(net, xs, ys, batches=[2], loss="sgdstab", subspace=10).points[0]
    assert pt["eta_low_certified"] <= exact * (1 + 1e-9) and pt["eta_high"] >= exact * (1 - 1e-9)


def test_momentum_band_contains_the_exact_momentum_threshold_in_torch_units():
    # band(momentum=, nesterov=) (theory/band.md section 6): each band holds
    # analyze(momentum=)'s eta* in the same (MSELoss) units, its upper side is
    # at most the full-batch limit, and the report echoes the momentum.
    model, x, y = linear_minimum()
    for nesterov in (False, True):
        rep = st.analyze(model, x, y, batches=[1, 3, 8], momentum=0.7, nesterov=nesterov)
        band = st.band(model, x, y, batches=[1, 3, 8], momentum=0.7, nesterov=nesterov, delta=0.0)
        assert band.momentum == 0.7 and band.nesterov == nesterov
        for exact, pt in zip(rep.points, band.points):
            assert pt["batch"] == exact["batch"] and pt["converged"]
            assert pt["eta_low"] <= exact["eta_star"] * (1 + 1e-9)
            assert pt["eta_high"] >= exact["eta_star"] * (1 - 1e-9)
            mean = rep.eta_gd * 1.7 / (2.4 if nesterov else 1.0)  # 2(1 + beta)/lambda_max, Nesterov over 1 + 2 beta
            assert pt["eta_high"] <= mean * (1 + 1e-9)
    # Nesterov at momentum 0 is plain SGD (as sgdstab.Momentum has it), and the report says so.
    zero = st.band(model, x, y, batches=[2], nesterov=True, delta=0.0)
    assert zero.momentum == 0.0 and zero.nesterov is False


def test_measures_equal_torch_hessians_at_an_interpolating_point():
    """sharpness, non-uniformity, |H|_F and Tr H against torch.autograd.functional.hessian of MSELoss
    itself (the whole loss and each sample's), at a point that interpolates its targets (targets =
    model(x), so the Hessian is its Gauss-Newton part), in MSELoss units."""
    from torch.nn.utils.stateless import functional_call  # PyTorch 1.13 and later

    n, d, c = 7, 4, 3
    model = mlp(d, c, seed=5, dtype=torch.float64)
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).clone()
    names = [nm for nm, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(rows):
        def f(t):
            parts, at = {}, 0
            for nm, sh in zip(names, shapes):
                parts[nm] = t[at:at + sh.numel()].reshape(sh)
                at += sh.numel()
            return torch.nn.functional.mse_loss(functional_call(model, parts, (x[rows],)), y[rows])
        return f  # mean over len(rows) * C entries

    h = torch.autograd.functional.hessian(loss_of(slice(None)), theta).numpy()
    hs = [torch.autograd.functional.hessian(loss_of(slice(i, i + 1)), theta).numpy() for i in range(n)]
    assert np.abs(h).max() > 0 and np.allclose(sum(hs) / n, h, atol=1e-12 * np.abs(h).max())
    nu = sum(hi @ hi for hi in hs) / n - h @ h
    got = st.measures(model, x)
    assert got.converged and got.loss == "mse_mean" and got.samples == n and got.outputs == c
    assert got.sharpness == pytest.approx(np.linalg.eigvalsh(h)[-1], rel=1e-9)
    assert got.non_uniformity == pytest.approx(math.sqrt(np.linalg.eigvalsh((nu + nu.T) / 2)[-1]), rel=1e-8)
    assert got.hessian_frobenius == pytest.approx(np.linalg.norm(h), rel=1e-9)
    assert got.hessian_trace == pytest.approx(np.trace(h), rel=1e-9)
    lib = st.measures(model, x, loss="sgdstab")  # the library's units: C/2 times MSELoss's curvature
    assert lib.sharpness == pytest.approx(got.sharpness * c / 2, rel=1e-12)
    assert got.to_dict()["library"]["converged"] and "sharpness=" in repr(got)
    # The matrix-free path on the same Gram agrees with the dense one.
    k = st.gram(model, x)
    dense = sgdstab.hessian_measures(k, c, method="dense")
    lanczos = sgdstab.hessian_measures(k, c, method="lanczos", dense_fallback_max_dimension=0)
    assert dense.method == "dense" and lanczos.method == "lanczos" and lanczos.converged
    assert lanczos.non_uniformity == pytest.approx(dense.non_uniformity, rel=1e-8)
    with pytest.raises(ValueError, match="loss"):
        st.measures(model, x, loss="mse_sum")
    with pytest.raises(ValueError, match="divide"):
        sgdstab.hessian_measures(k, 4)


def zero_minimum_with_adam_state():
    """linear_minimum's model moved to w* = 0 with targets 0 (an interpolating minimum where a weight decay
    pulls towards w* and adds no drift): model, x, y, w*, a seeded second-moment state v (two decades) and
    MSELoss(mean)'s Hessian on the row-major weight."""
    model, x, _ = linear_minimum()
    with torch.no_grad():
        model.weight.zero_()
    y = torch.zeros(x.shape[0], 4, dtype=torch.float64)
    n, c = y.shape
    w_star = model.weight.detach().clone()
    g = torch.Generator().manual_seed(7)
    v = 1e-2 * torch.exp(1.5 * torch.randn(w_star.shape, generator=g, dtype=torch.float64))
    xs = x.numpy()
    return model, x, y, w_star, v, np.kron(np.eye(c), xs.T @ xs / n) * 2 / c


@pytest.mark.parametrize("beta1,batch", [(0.5, 2), (0.9, 8)])
def test_adamw_threshold_against_torch_optim_adamw(beta1, batch):
    # torch.optim.AdamW's decoupled decay theta <- (1 - lr wd) theta (theory/adaptive.md, section 5), at an
    # interpolating minimum at w* = 0 (targets 0), where the decay pulls towards w* and adds no drift. The
    # report is the library's adamw answer in torch units (wd_lib = lr_factor wd); real AdamW runs return at
    # 0.9 eta* and escape at 1.3 eta*; the decay moves eta* away from Adam's; at B = n eta* is the
    # closed form 2 (1 + beta1) / ((1 - beta1) lambda_max(P^{-1} H) + (1 + beta1) wd).
    model, x, y, w_star, v, h_torch = zero_minimum_with_adam_state()
    n, c = y.shape
    adam = st.analyze(model, x, y, batches=[batch], optimizer=frozen_adam([model.weight], v, 1e-3, beta1))
    bc2 = 1 - (1 - 1e-6) ** (1e7 + 1)
    pre = ((v / bc2).sqrt() + 1e-8).reshape(-1).numpy()
    lam = np.linalg.eigvals(h_torch / pre[:, None]).real.max()
    wd = 0.5 * lam
    rep = st.analyze(model, x, y, batches=[batch], batch=batch,
                     optimizer=frozen_adam([model.weight], v, 1e-3, beta1, "adamw", wd))
    assert rep.converged and rep.optimizer == "adamw" and rep.weight_decay == wd and rep.weight_decay_decoupled
    eta = rep.points[0]["eta_star"]
    assert abs(eta / adam.points[0]["eta_star"] - 1) > 0.05, (eta, adam.points[0]["eta_star"])
    assert math.isclose(rep.eta_gd, 2 * (1 + beta1) / ((1 - beta1) * lam + (1 + beta1) * wd), rel_tol=1e-8)
    if batch == n:
        assert math.isclose(eta, rep.eta_gd, rel_tol=1e-8)
    assert rep.verdict["stable"] == (1e-3 <= eta)
    seeds = range(1) if batch == n else range(5)
    below = [run_adam(x, y, w_star, v, 0.9 * eta, beta1, batch, s, "adamw", wd=wd) for s in seeds]
    above = [run_adam(x, y, w_star, v, 1.3 * eta, beta1, batch, s, "adamw", wd=wd) for s in seeds]
    assert max(below) < 1e-3, below
    assert all(not (r <= 1e6) for r in above), above



@pytest.mark.parametrize("kind,beta1,batch", [("adam", 0.5, 2), ("adam", 0.9, 8), ("rmsprop", 0.0, 1)])
def test_adam_and_rmsprop_l2_decay_against_torch_optim(kind, beta1, batch):
    # torch.optim.Adam's and RMSprop's own weight_decay (L2: grad + wd theta before the division by P;
    # theory/adaptive.md, section 6), at an interpolating minimum at w* = 0 (targets 0), where the decay pulls
    # towards w* and adds no drift. analyze answers from the Jacobian and P on the whole parameter space;
    # real runs with the state frozen return at 0.9 eta* and escape at 1.3 eta*; the decay moves eta* away
    # from the undecayed optimizer's; at B = n eta* is the closed form
    # 2 (1 + beta1) / ((1 - beta1) lambda_max(P^{-1}(H + wd))) in torch's units.
    model, x, y, w_star, v, h_torch = zero_minimum_with_adam_state()
    n, c = y.shape
    plain = st.analyze(model, x, y, batches=[batch], optimizer=frozen_adam([model.weight], v, 1e-3, beta1, kind))
    bc2 = 1 - (1 - 1e-6) ** (1e7 + 1) if kind == "adam" else 1.0  # RMSprop's square_avg has no bias correction
    pre = ((v / bc2).sqrt() + 1e-8).reshape(-1).numpy()
    lam = np.linalg.eigvals(h_torch / pre[:, None]).real.max()
    wd = 0.5 * lam * pre.min()  # comparable to the curvature in P^{-1}'s smallest direction
    rep = st.analyze(model, x, y, batches=[batch], batch=batch,
                     optimizer=frozen_adam([model.weight], v, 1e-3, beta1, kind, wd))
    assert rep.converged and rep.optimizer == kind and rep.weight_decay == wd
    assert not getattr(rep, "weight_decay_decoupled", False)
    eta = rep.points[0]["eta_star"]
    assert abs(eta / plain.points[0]["eta_star"] - 1) > 0.02, (eta, plain.points[0]["eta_star"])
    lam_wd = np.linalg.eigvals((h_torch + wd * np.eye(len(pre))) / pre[:, None]).real.max()
    assert math.isclose(rep.eta_gd, 2 * (1 + beta1) / ((1 - beta1) * lam_wd), rel_tol=1e-8)
    if batch == n:
        assert math.isclose(eta, rep.eta_gd, rel_tol=1e-8)
    assert rep.verdict["stable"] == (1e-3 <= eta) and rep.verdict["decided_by"] == "rho"
    # rho at the runs' two learning rates in the library's units (lr / (C/2), wd C/2), on each side of 1 as
    # the torch runs below are.
    lib = [sgdstab.adam_l2_radius(st.jacobian(model, x), pre, f * eta / (c / 2), batch, outputs=c, beta1=beta1,
                                  weight_decay=wd * c / 2).rho for f in (0.9, 1.3)]
    assert lib[0] < 1 < lib[1], lib
    seeds = range(1) if batch == n else range(5)
    below = [run_adam(x, y, w_star, v, 0.9 * eta, beta1, batch, s, kind, wd=wd) for s in seeds]
    above = [run_adam(x, y, w_star, v, 1.3 * eta, beta1, batch, s, kind, wd=wd) for s in seeds]
    assert max(below) < 1e-3, below
    assert all(not (r <= 1e6) for r in above), above


def test_adam_l2_curve_from_the_jacobian_and_the_preconditioner():
    # sgdstab.adam_l2_curve: P = 1 is heavy-ball SGD with L2 decay at lr (1 - beta1) (the r x r solver);
    # wd = 0 is adam_threshold on J P^{-1/2}; the JSON echoes the optimizer.
    rng = np.random.default_rng(3)
    jac = rng.standard_normal((8, 5))
    pre = np.exp(rng.standard_normal(5))
    g = sgdstab.Geometry.from_jacobian(jac, 2)
    got = sgdstab.adam_l2_curve(jac, np.ones(5), [1, 2], outputs=2, beta1=0.9, weight_decay=0.3)
    for pt in got.points:
        want = sgdstab.threshold(g, pt.batch, momentum=0.9, weight_decay=0.3).eta_star / 0.1
        assert pt.converged and pt.eta_star == pytest.approx(want, rel=1e-8)
    gp = sgdstab.Geometry.from_jacobian(sgdstab.precondition(jac, pre), 2)
    zero = sgdstab.adam_l2_threshold(jac, pre, 2, outputs=2, beta1=0.9, weight_decay=0.0)
    assert zero.eta_star == pytest.approx(sgdstab.adam_threshold(gp, 2, beta1=0.9).eta_star, rel=1e-12)
    d = sgdstab.adam_l2_threshold(jac, pre, 2, outputs=2, beta1=0.0, weight_decay=0.2).to_dict()
    assert d["optimizer"] == "rmsprop" and d["weight_decay"] == 0.2 and "eta_gd" not in d
    with pytest.raises(ValueError, match="weight decay"):
        sgdstab.adam_l2_threshold(jac, pre, 2, outputs=2, weight_decay=-1.0)


def run_stationary(x, y, w_star, make_optimizer, loss, batch=2, weight=None, steps=40000, burn=2000, seed=5):
    """A real torch run of a bias-free Linear from w* with make_optimizer([weight]) on `loss`, batches of
    `batch` drawn without replacement from a seeded generator: the time averages, over `steps` steps after
    `burn`, of |theta - theta*|^2, of the full-data loss above its value at w*, and (with weight) of
    (theta - theta*)^T diag(weight) (theta - theta*)."""
    m = torch.nn.Linear(w_star.shape[1], w_star.shape[0], bias=False).double()
    with torch.no_grad():
        m.weight.copy_(w_star)
    opt = make_optimizer([m.weight])
    with torch.no_grad():
        base = loss(m(x), y).item()
    gen = torch.Generator().manual_seed(seed)
    w = None if weight is None else weight.reshape(-1)
    sq, ex, wsq = [], [], []
    for t in range(burn + steps):
        idx = torch.randperm(x.shape[0], generator=gen)[:batch]
        opt.zero_grad()
        loss(m(x[idx]), y[idx]).backward()
        opt.step()
        if t >= burn:
            with torch.no_grad():
                d = (m.weight - w_star).reshape(-1)
                sq.append((d * d).sum().item())
                ex.append(loss(m(x), y).item() - base)
                if w is not None:
                    wsq.append((d * w * d).sum().item())
    return np.mean(sq), np.mean(ex), (np.mean(wsq) if w is not None else None)


def least_squares_minimum():
    """(generator, x, y, model, w*): a bias-free Linear 3 -> 3 at the least-squares minimum of 8 random
    samples, which does not interpolate (p = 9 < n C = 24); the generator continues the seeded stream."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randn(8, 3, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    return g, x, y, model, model.weight.detach().clone()


@pytest.mark.parametrize("momentum", [None, 0.5])
def test_covariance_against_torch_optim_sgd(momentum):
    # sgdstab.torch.covariance at a least-squares minimum that does not interpolate (p = 9 < n C = 24),
    # in MSELoss(mean)'s units (lr_factor C/2 = 1.5), against a real torch.optim.SGD run (momentum 0.5 or
    # none, batches of 2 drawn without replacement) at half the threshold: the time averages of
    # |theta - theta*|^2 and of the full-data loss above its minimum (exactly quadratic for a linear model)
    # over 40 000 steps. Measured (AMD EPYC, this seed; 40 batch means): plain +0.1 % and +0.3 % off with
    # standard errors 0.5 % and 0.4 %, momentum +0.9 % and +1.1 % with 0.6 % and 0.5 %: 5 % is 8 or more
    # standard errors, and a lost factor C/2 in the loss would be 50 % off.
    g, x, y, model, w_star = least_squares_minimum()
    eta = st.analyze(model, x, y, batches=[2], allow_non_minimum=True, momentum=momentum).points[0]["eta_star"]
    lr = 0.5 * eta
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum or 0.0)
    cov = st.covariance(model, x, y, batch=2, optimizer=opt)
    assert cov.converged and cov.rho < 1 and cov.momentum == (momentum or 0.0)
    assert cov.params == 9 and cov.rank == 9 and cov.lr_factor == 1.5
    # The same as the library by hand: residuals, lr / (C / 2).
    with torch.no_grad():
        res = (model(x) - y).reshape(-1).numpy()
    by_hand = sgdstab.covariance(sgdstab.Geometry.from_jacobian(st.jacobian(model, x), 3), res, lr / 1.5, 2,
                                 momentum=momentum)
    assert math.isclose(cov.trace, by_hand.trace, rel_tol=1e-12)
    assert math.isclose(cov.excess_loss, by_hand.excess_loss / 1.5, rel_tol=1e-12)  # library loss = MSE loss * C / 2
    sq, ex, _ = run_stationary(x, y, w_star, lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum or 0.0),
                               torch.nn.MSELoss())
    assert math.isclose(sq, cov.trace, rel_tol=0.05), (sq, cov.trace)
    assert math.isclose(ex, cov.excess_loss, rel_tol=0.05), (ex, cov.excess_loss)
    # Weight decay: this point is no minimum of the penalized loss.
    decayed = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum or 0.0, weight_decay=0.1)
    with pytest.raises(ValueError, match="not a minimum of the regularized loss"):
        st.covariance(model, x, y, batch=2, optimizer=decayed)
    with pytest.raises(ValueError, match=">= 1"):
        st.covariance(model, x, y, 3 * eta, 2, momentum=momentum)


def test_covariance_of_adam_against_torch_optim_adam():
    # sgdstab.torch.covariance(optimizer=Adam) with the second-moment state frozen (beta2 = 1 - 1e-9 and
    # step 1e10: v moves by < 1e-4 over the run, the bias corrections are 1) at the non-interpolating
    # least-squares minimum of test_covariance_against_torch_optim_sgd, against a real torch.optim.Adam run
    # (beta1 0.5, batches of 2) at half the threshold: the time averages of (theta - theta*)^T P (theta -
    # theta*), of |theta - theta*|^2 (phi's covariance mapped back through the basis of range(H~)) and of
    # the full-data MSE above its minimum over 40 000 steps, within 5 %. Measured (AMD EPYC, this seed; 40
    # batch means): -1.9 %, -0.8 % and -0.4 % off with standard errors 1.3 %, 0.9 % and 1.0 %; forgetting the
    # factor 1 - beta1 in the lr would run the model at twice the lr (about twice the covariance).
    g, x, y, model, w_star = least_squares_minimum()
    v = 1e-2 * torch.exp(torch.randn(w_star.shape, generator=g, dtype=torch.float64))

    def adam(params, lr):
        (w,) = params
        opt = torch.optim.Adam([w], lr=lr, betas=(0.5, 1 - 1e-9))
        opt.state[w] = {"step": torch.tensor(1e10), "exp_avg": torch.zeros_like(w), "exp_avg_sq": v.clone()}
        return opt

    eta = st.analyze(model, x, y, batches=[2], allow_non_minimum=True,
                     optimizer=adam([model.weight], 1e-3)).points[0]["eta_star"]
    lr = 0.5 * eta
    cov = st.covariance(model, x, y, batch=2, optimizer=adam([model.weight], lr))
    assert cov.converged and cov.rho < 1 and cov.optimizer == "adam"
    pre = (v.sqrt() + 1e-8).reshape(-1)  # torch's P (bias corrections 1 to 1e-4)
    sq, ex, wsq = run_stationary(x, y, w_star, lambda ps: adam(ps, lr), torch.nn.MSELoss(), weight=pre)
    assert math.isclose(wsq, cov.trace_preconditioned, rel_tol=0.05), (wsq, cov.trace_preconditioned)
    assert math.isclose(sq, cov.trace, rel_tol=0.05), (sq, cov.trace)
    assert math.isclose(ex, cov.excess_loss, rel_tol=0.05), (ex, cov.excess_loss)


def late_adam(cls, weight, lr, beta1, v, **kwargs):
    """torch.optim.Adam or AdamW on [weight] late in training: step 1e6 (both bias corrections exactly 1,
    0.5^1e6 and 0.999^1e6 underflow), m = 0, exp_avg_sq = v."""
    opt = cls([weight], lr=lr, betas=(beta1, 0.999), **kwargs)
    opt.state[weight] = {"step": torch.tensor(1e6), "exp_avg": torch.zeros_like(weight), "exp_avg_sq": v.clone()}
    return opt


def adam_theta_covariance_enumerated(jac, res, pinv, lr, beta1, c, decoupled=0.0, gbar=None):
    """The delta block of the stationary second moment of Adam's (AdamW's, with its decoupled decay) linearized
    step in torch's units (MSELoss(mean) on the batch), state (delta, m - gbar): m' = beta1 m + (1 - beta1) g_B,
    theta' = (1 - lr decoupled) theta - lr P^-1 m', g_B = H_B delta + (g*_B - gbar), enumerated over every batch
    of 2 drawn without replacement and solved densely."""
    import itertools

    n, p = len(jac), jac[0].shape[1]
    gbar = np.zeros(p) if gbar is None else gbar
    batches = list(itertools.combinations(range(n), 2))
    emm, ecc = np.zeros((4 * p * p, 4 * p * p)), np.zeros((2 * p, 2 * p))
    for b in batches:
        hb = sum(jac[i].T @ jac[i] for i in b) * 2.0 / (len(b) * c)
        xi = sum(jac[i].T @ res[i] for i in b) * 2.0 / (len(b) * c) - gbar
        m_b = np.block([[(1 - lr * decoupled) * np.eye(p) - lr * (1 - beta1) * pinv @ hb, -lr * beta1 * pinv],
                        [(1 - beta1) * hb, beta1 * np.eye(p)]])
        c_b = np.concatenate([-lr * (1 - beta1) * pinv @ xi, (1 - beta1) * xi])
        emm += np.kron(m_b, m_b) / len(batches)
        ecc += np.outer(c_b, c_b) / len(batches)
    s = np.linalg.solve(np.eye(4 * p * p) - emm, ecc.reshape(-1)).reshape(2 * p, 2 * p)
    return 0.5 * (s[:p, :p] + s[:p, :p].T)


def test_adam_covariance_in_theta_against_the_enumerated_map():
    # The theta-space answer of sgdstab.torch.covariance(optimizer=Adam) (trace, top eigenvalues,
    # E[delta^T P delta], excess loss) against an independent dense solve in torch's own units: Adam's
    # linearized step with the state (delta, m), m' = beta1 m + (1 - beta1) g_B, delta' = delta - lr P^-1 m',
    # g_B = H_B delta + g*_B (MSELoss(mean) on the batch, J_i = kron(I_3, x_i^T) for the bias-free Linear),
    # enumerated over the 28 batches of 2 drawn without replacement: S = E[M_B S M_B^T] + E[c_B c_B^T]
    # (E[z] = 0, so the cross terms vanish), solved as one (2p)^2 linear system. The library goes through
    # phi = P^{1/2} delta, heavy-ball at lr (1 - beta1), the basis of range(H~) and back.
    g, x, y, model, w_star = least_squares_minimum()
    v = 1e-2 * torch.exp(torch.randn(w_star.shape, generator=g, dtype=torch.float64))
    beta1 = 0.5

    def adam(lr):
        return late_adam(torch.optim.Adam, model.weight, lr, beta1, v)

    eta = st.analyze(model, x, y, batches=[2], allow_non_minimum=True, optimizer=adam(1e-3)).points[0]["eta_star"]
    lr = 0.6 * eta
    cov = st.covariance(model, x, y, batch=2, optimizer=adam(lr), top=9)
    assert cov.converged and cov.rho < 1
    xs, ys, w = x.numpy(), y.numpy(), w_star.numpy()
    n, c = 8, 3
    jac = [np.kron(np.eye(c), xs[i][None, :]) for i in range(n)]
    res = [w @ xs[i] - ys[i] for i in range(n)]
    pinv = np.diag(1.0 / ((v.sqrt() + 1e-8).reshape(-1).numpy()))
    sd = adam_theta_covariance_enumerated(jac, res, pinv, lr, beta1, c)
    ev = np.sort(np.linalg.eigvalsh(sd))[::-1]
    assert math.isclose(cov.trace, np.trace(sd), rel_tol=1e-7), (cov.trace, np.trace(sd))
    assert len(cov.top_eigenvalues) == 9
    for got, want in zip(cov.top_eigenvalues, ev):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9 * ev[0]), (cov.top_eigenvalues, ev)
    assert math.isclose(cov.trace_preconditioned, np.trace(np.linalg.inv(pinv) @ sd), rel_tol=1e-7)
    excess = sum(np.trace(jac[i].T @ jac[i] @ sd) for i in range(n)) / (n * c)  # MSELoss(mean) above its minimum
    assert math.isclose(cov.excess_loss, excess, rel_tol=1e-7), (cov.excess_loss, excess)


def test_covariance_with_weight_decay_against_the_enumerated_map():
    # sgdstab.torch.covariance(optimizer=torch.optim.SGD(lr, weight_decay=WD)) at the minimum of the penalized
    # MSELoss(mean) + WD/2 |W|^2 (ridge: W* = Y^T X (X^T X + (n C WD / 2) I)^-1, where the data gradients do
    # not sum to zero), against an independent dense solve in torch's own units: the step
    # delta' = (1 - lr WD) delta - lr (H_B delta + g*_B + WD theta*), H_B and g*_B of MSELoss(mean) on the
    # batch (J_i = kron(I_3, x_i^T)), enumerated over the 28 batches of 2 drawn without replacement:
    # vec S = (I - E[A_B (x) A_B])^-1 vec E[c_B c_B^T]. The library goes through its own units (lambda =
    # WD C/2) and the centred noise of theory/covariance.md section 8.
    import itertools

    _, x, y, model, _ = least_squares_minimum()
    n, c, p, wd = 8, 3, 9, 0.4
    xs, ys = x.numpy(), y.numpy()
    w = ys.T @ xs @ np.linalg.inv(xs.T @ xs + 0.5 * n * c * wd * np.eye(3))
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w))
    theta = w.reshape(-1)
    eta = st.analyze(model, x, y, batches=[2], allow_non_minimum=True, weight_decay=wd).points[0]["eta_star"]
    lr = 0.6 * eta
    cov = st.covariance(model, x, y, batch=2, optimizer=torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd),
                        top=9)
    assert cov.converged and cov.rho < 1 and cov.weight_decay == wd
    jac = [np.kron(np.eye(c), xs[i][None, :]) for i in range(n)]
    res = [w @ xs[i] - ys[i] for i in range(n)]
    batches = list(itertools.combinations(range(n), 2))

    def enumerated(lr, mu):
        # torch.optim.SGD(lr, momentum=mu, weight_decay=wd) linearized, state (delta, buf):
        # buf' = mu buf + (H_B + wd) delta + g*_B + wd theta*, delta' = delta - lr buf'.
        q = 2 * p
        emm, ecc = np.zeros((q * q, q * q)), np.zeros((q, q))
        for b in batches:
            hb = sum(jac[i].T @ jac[i] for i in b) * 2.0 / (len(b) * c) + wd * np.eye(p)
            gb = sum(jac[i].T @ res[i] for i in b) * 2.0 / (len(b) * c) + wd * theta
            m_b = np.block([[np.eye(p) - lr * hb, -lr * mu * np.eye(p)], [hb, mu * np.eye(p)]])
            c_b = np.concatenate([-lr * gb, gb])
            emm += np.kron(m_b, m_b) / len(batches)
            ecc += np.outer(c_b, c_b) / len(batches)
        z = np.linalg.solve(np.eye(q * q) - emm, ecc.reshape(-1)).reshape(q, q)[:p, :p]
        return 0.5 * (z + z.T)

    s = enumerated(lr, 0.0)
    ev = np.sort(np.linalg.eigvalsh(s))[::-1]
    assert math.isclose(cov.trace, np.trace(s), rel_tol=1e-8), (cov.trace, np.trace(s))
    for got, want in zip(cov.top_eigenvalues, ev):
        assert math.isclose(got, want, rel_tol=1e-7, abs_tol=1e-9 * ev[0]), (cov.top_eigenvalues, ev)
    excess = sum(np.trace(jac[i].T @ jac[i] @ s) for i in range(n)) / (n * c)  # MSELoss(mean) above its value at W*
    assert math.isclose(cov.excess_loss, excess, rel_tol=1e-8), (cov.excess_loss, excess)
    # The same through sgdstab.covariance in the library's units, and the keyword form.
    by_hand = sgdstab.covariance(sgdstab.Geometry.from_jacobian(st.jacobian(model, x), c),
                                 np.concatenate(res), lr / 1.5, 2, weight_decay=wd * 1.5, theta=theta,
                                 jacobian=st.jacobian(model, x))
    assert math.isclose(by_hand.trace, cov.trace, rel_tol=1e-12) and by_hand.weight_decay == wd * 1.5
    assert math.isclose(st.covariance(model, x, y, lr, 2, weight_decay=wd).trace, cov.trace, rel_tol=1e-12)
    # Errors: theta without weight_decay and the converse, a bad weight_decay, a point off the minimum.
    with pytest.raises(ValueError, match="go together"):
        sgdstab.covariance(by_hand_geometry := sgdstab.Geometry.from_jacobian(st.jacobian(model, x), c),
                           np.concatenate(res), lr / 1.5, 2, theta=theta, jacobian=st.jacobian(model, x))
    with pytest.raises(ValueError, match="needs jacobian"):
        sgdstab.covariance(by_hand_geometry, np.concatenate(res), lr / 1.5, 2, weight_decay=0.6, theta=theta)
    # Heavy-ball 0.5 with the same weight decay, at 0.6 of its own threshold.
    eta_m = st.analyze(model, x, y, batches=[2], allow_non_minimum=True, momentum=0.5,
                       weight_decay=wd).points[0]["eta_star"]
    cov_m = st.covariance(model, x, y, batch=2, top=9,
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.6 * eta_m, momentum=0.5, weight_decay=wd))
    assert cov_m.converged and cov_m.momentum == 0.5 and cov_m.weight_decay == wd
    s_m = enumerated(0.6 * eta_m, 0.5)
    assert math.isclose(cov_m.trace, np.trace(s_m), rel_tol=1e-8), (cov_m.trace, np.trace(s_m))
    excess_m = sum(np.trace(jac[i].T @ jac[i] @ s_m) for i in range(n)) / (n * c)
    assert math.isclose(cov_m.excess_loss, excess_m, rel_tol=1e-8), (cov_m.excess_loss, excess_m)
    with pytest.raises(ValueError, match="weight_decay: must be finite"):
        st.covariance(model, x, y, lr, 2, weight_decay=-1.0)
    with pytest.raises(ValueError, match="not a minimum of the regularized loss"):
        st.covariance(model, x, y, lr, 2, weight_decay=2 * wd)


def test_covariance_with_weight_decay_against_torch_optim_sgd():
    # A real torch.optim.SGD(lr, momentum=0.5, weight_decay=0.4) run from the ridge minimum of
    # test_covariance_with_weight_decay_against_the_enumerated_map (batches of 2 without replacement, half the
    # threshold): the time averages of |theta - theta*|^2 and of the MSELoss (without the penalty) above its
    # value at theta* over 40 000 steps, against sgdstab.torch.covariance(optimizer=) of the same optimizer.
    # This checks torch's weight-decay semantics (grad + WD theta into the buffer) rather than our model of
    # them. Measured (AMD EPYC, this seed; 40 batch means): +0.27 % and +0.24 % off with standard errors
    # 0.36 % and 0.44 %: 5 % is 11 or more standard errors.
    _, x, y, model, _ = least_squares_minimum()
    n, c, wd, mu = 8, 3, 0.4, 0.5
    xs, ys = x.numpy(), y.numpy()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(ys.T @ xs @ np.linalg.inv(xs.T @ xs + 0.5 * n * c * wd * np.eye(3))))
    w_star = model.weight.detach().clone()
    eta = st.analyze(model, x, y, batches=[2], allow_non_minimum=True, momentum=mu,
                     weight_decay=wd).points[0]["eta_star"]
    lr = 0.5 * eta
    cov = st.covariance(model, x, y, batch=2,
                        optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=mu, weight_decay=wd))
    assert cov.converged and cov.rho < 1
    sq, ex, _ = run_stationary(x, y, w_star, lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu, weight_decay=wd),
                               torch.nn.MSELoss())
    assert math.isclose(sq, cov.trace, rel_tol=0.05), (sq, cov.trace)
    assert math.isclose(ex, cov.excess_loss, rel_tol=0.05), (ex, cov.excess_loss)


def softmax_regression_minimum(wd=0.0):
    """(x, y, model, CrossEntropyLoss()): a bias-free linear softmax model on 30 random points in 2-D with random
    labels among 3 (not separable), at the minimum of CrossEntropyLoss(mean) + wd/2 |W|^2 found by LBFGS from 0."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    model = torch.nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    ce = torch.nn.CrossEntropyLoss()
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-15, tolerance_change=1e-20,
                              line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        value = ce(model(x), y) + 0.5 * wd * (model.weight ** 2).sum()
        value.backward()
        return value

    for _ in range(5):
        lbfgs.step(closure)
    return x, y, model, ce


def test_adamw_covariance_in_theta_against_the_enumerated_map():
    # sgdstab.torch.covariance(optimizer=AdamW) at AdamW's fixed point (grad + WD P theta* = 0: a minimum of
    # MSELoss(mean) + WD/2 theta^T P theta, solved exactly) against a dense solve in torch's own units: AdamW's
    # linearized step, state (delta, m - gbar), m' = beta1 m + (1 - beta1) g_B, theta' = (1 - lr WD) theta
    # - lr P^-1 m', enumerated over the 28 batches of 2 without replacement. The library goes through
    # phi = P^{1/2} delta: heavy-ball at lr (1 - beta1) / (C/2) with the decoupled mu = WD (C/2) / (1 - beta1)
    # (its units), and back to theta.
    g, x, y, model, _ = least_squares_minimum()
    v = 1e-2 * torch.exp(torch.randn((3, 3), generator=g, dtype=torch.float64))
    beta1, wd, n, c = 0.5, 0.2, 8, 3
    pre = (v.sqrt() + 1e-8).reshape(-1).numpy()
    xs, ys = x.numpy(), y.numpy()
    jac = [np.kron(np.eye(c), xs[i][None, :]) for i in range(n)]
    h_t = sum(j.T @ j for j in jac) * 2.0 / (n * c)
    theta = np.linalg.solve(h_t + wd * np.diag(pre), sum(jac[i].T @ ys[i] for i in range(n)) * 2.0 / (n * c))
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(theta.reshape(3, 3)))

    def adamw(lr):
        return late_adam(torch.optim.AdamW, model.weight, lr, beta1, v, weight_decay=wd)

    eta = st.analyze(model, x, y, batches=[2], allow_non_minimum=True, optimizer=adamw(1e-3)).points[0]["eta_star"]
    lr = 0.6 * eta
    cov = st.covariance(model, x, y, batch=2, optimizer=adamw(lr), top=9)
    assert cov.converged and cov.rho < 1 and cov.weight_decay == wd and cov.weight_decay_decoupled
    res = [theta.reshape(3, 3) @ xs[i] - ys[i] for i in range(n)]
    gbar = sum(jac[i].T @ res[i] for i in range(n)) * 2.0 / (n * c)
    assert np.linalg.norm(gbar + wd * pre * theta) < 1e-12 * np.linalg.norm(gbar)
    sd = adam_theta_covariance_enumerated(jac, res, np.diag(1.0 / pre), lr, beta1, c, decoupled=wd, gbar=gbar)
    ev = np.sort(np.linalg.eigvalsh(sd))[::-1]
    assert math.isclose(cov.trace, np.trace(sd), rel_tol=1e-7), (cov.trace, np.trace(sd))
    for got, want in zip(cov.top_eigenvalues, ev):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9 * ev[0]), (cov.top_eigenvalues, ev)
    assert math.isclose(cov.trace_preconditioned, np.trace(np.diag(pre) @ sd), rel_tol=1e-7)
    excess = sum(np.trace(jac[i].T @ jac[i] @ sd) for i in range(n)) / (n * c)
    assert math.isclose(cov.excess_loss, excess, rel_tol=1e-7), (cov.excess_loss, excess)
    # The point matters: at Adam's (unpenalized) least-squares minimum AdamW's fixed point is not reached.
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    with pytest.raises(ValueError, match="not a minimum of the regularized loss"):
        st.covariance(model, x, y, batch=2, optimizer=adamw(lr))


def test_covariance_with_cross_entropy_against_torch_optim_sgd():
    # loss="cross_entropy" at the minimum of a non-separable problem (a linear softmax model, 30 random
    # points in 2-D with random labels among 3: a finite minimum, found by LBFGS; rank 4 of p = 6, the
    # logits' common shift being the null space). Real torch.optim.SGD on CrossEntropyLoss(mean), batches
    # of 2, 40 000 steps, at 0.5 and 0.2 eta*. The loss is not quadratic, so the linearized answer holds
    # to O(lr): measured (AMD EPYC, this seed; 40 batch means) E|theta - theta*|^2 +12.3 % and +6.1 % off
    # (standard errors 0.6 % and 0.9 %), the excess loss -7.0 % and -0.1 % (0.5 % and 0.8 %). Checked: the
    # excess loss within 3 % at 0.2 eta*, and the second moment within 10 % there and closer than at 0.5 eta*.
    x, y, model, ce = softmax_regression_minimum()
    w_star = model.weight.detach().clone()
    eta = st.analyze(model, x, y, batches=[2], loss="cross_entropy").points[0]["eta_star"]
    errors = {}
    for frac in (0.5, 0.2):
        cov = st.covariance(model, x, y, frac * eta, 2, loss="cross_entropy")
        assert cov.converged and cov.rank == 4 and cov.lr_factor == 1.0
        sq, ex, _ = run_stationary(x, y, w_star, lambda ps: torch.optim.SGD(ps, lr=frac * eta), ce)
        errors[frac] = (sq / cov.trace - 1, ex / cov.excess_loss - 1)
    assert abs(errors[0.2][1]) < 0.03, errors
    assert abs(errors[0.2][0]) < 0.10 and abs(errors[0.2][0]) < abs(errors[0.5][0]), errors
    with pytest.raises(ValueError, match="not a minimum"):
        st.covariance(model, x, (y + 1) % 3, 0.2 * eta, 2, loss="cross_entropy")


def test_covariance_with_cross_entropy_and_weight_decay_against_the_enumerated_map():
    # L2-regularized softmax regression (CrossEntropyLoss(mean) + WD/2 |W|^2, a finite minimum found by
    # LBFGS; rank 4 of p = 6: the logits' common shift is the null space, and theta* has no part there) with
    # sgdstab.torch.covariance(loss="cross_entropy", optimizer=SGD(weight_decay=WD)) against the fixed point
    # of the linearized step in torch's units, delta' = (1 - lr WD) delta - lr (h_B delta + g_B + WD theta*),
    # h_i = J_i^T (diag p_i - p_i p_i^T) J_i, g_i = J_i^T (p_i - t_i), J_i = kron(I_3, x_i^T), enumerated over
    # the 435 batches of 2 drawn without replacement.
    import itertools

    wd = 0.3
    x, y, model, _ = softmax_regression_minimum(wd)
    eta = st.analyze(model, x, y, batches=[2], loss="cross_entropy", allow_non_minimum=True,
                     weight_decay=wd).points[0]["eta_star"]
    lr = 0.5 * eta
    cov = st.covariance(model, x, y, batch=2, loss="cross_entropy",
                        optimizer=torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd))
    assert cov.converged and cov.rank == 4 and cov.weight_decay == wd
    n, p = 30, 6
    xs, theta = x.numpy(), model.weight.detach().numpy().reshape(-1)
    with torch.no_grad():
        prob = torch.softmax(model(x), dim=1).numpy()
    onehot = np.eye(3)[y.numpy()]
    jac = [np.kron(np.eye(3), xs[i][None, :]) for i in range(n)]
    h = [jac[i].T @ (np.diag(prob[i]) - np.outer(prob[i], prob[i])) @ jac[i] for i in range(n)]
    gr = [jac[i].T @ (prob[i] - onehot[i]) for i in range(n)]
    assert np.linalg.norm(sum(gr) / n + wd * theta) < 1e-7  # LBFGS found the penalized minimum (7.5e-9)
    batches = list(itertools.combinations(range(n), 2))
    eaa, ecc = np.zeros((p * p, p * p)), np.zeros((p, p))
    for b in batches:
        a_b = (1 - lr * wd) * np.eye(p) - lr * (h[b[0]] + h[b[1]]) / 2
        c_b = -lr * ((gr[b[0]] + gr[b[1]]) / 2 + wd * theta)
        eaa += np.kron(a_b, a_b) / len(batches)
        ecc += np.outer(c_b, c_b) / len(batches)
    sig = np.linalg.solve(np.eye(p * p) - eaa, ecc.reshape(-1)).reshape(p, p)
    assert math.isclose(cov.trace, np.trace(sig), rel_tol=1e-8), (cov.trace, np.trace(sig))
    excess = 0.5 * np.trace(sum(h) / n @ sig)
    assert math.isclose(cov.excess_loss, excess, rel_tol=1e-8), (cov.excess_loss, excess)
