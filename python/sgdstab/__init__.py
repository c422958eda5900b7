"""sgdstab: exact linear stability of SGD at interpolating minima of the square loss.

Will SGD with learning rate ``lr`` and batch size ``B`` stay at this minimum or
escape it? This package answers from NumPy (and PyTorch, :mod:`sgdstab.torch`)
with the C++ library's routines; every result's ``to_dict()`` holds the same
keys and numbers as the JSON of the matching ``sgdstab`` command.

Conventions (the library's only ones; see the README):

* Loss: per-sample loss ``1/2 |f(x_i) - y_i|^2``, training loss the mean over
  the n samples. PyTorch's ``MSELoss(reduction="mean")`` also averages over
  the C outputs and drops the 1/2: its learning rates are ``C/2`` times ours
  (``sgdstab.torch.analyze`` converts; :func:`torch_lr` / :func:`from_torch_lr`).
* Jacobian: ``(n*C) x p``, sample-major rows (row ``i*C + k`` is
  ``d f_k(x_i) / d theta``); the Gram is ``K = J J^T``.
* Sampling schemes: ``"without"`` (uniform B-subset), ``"with"`` (B i.i.d.
  indices), ``"bernoulli"`` (each sample w.p. B/n); Monte Carlo also accepts
  ``"reshuffle"``.
* Arrays: float64 arrays in C or Fortran order are read in place (no copy);
  float32 and strided arrays are converted; any other dtype is a TypeError.
* Errors: bad input raises ValueError, unreadable or corrupt files OSError, a
  problem that would not fit in memory MemoryError, each with the library's
  message. A number is to be trusted only when its result says
  ``converged`` (``status == "converged"``).
* Threads: the GIL is released while the library computes; Ctrl-C interrupts
  a call made from the main thread (KeyboardInterrupt).

Example::

    import numpy as np, sgdstab
    J = np.random.default_rng(0).standard_normal((40, 100))   # n = 40, C = 1
    g = sgdstab.Geometry.from_jacobian(J, outputs=1)
    r = sgdstab.threshold(g, batch=8)
    print(r.eta_star, r.converged, g.eta_gd)                  # eta*(8) <= 2/lambda_max
"""

import math as _math

from . import _core
from ._core import (  # noqa: F401  (the result classes, for isinstance and help())
    BandResult,
    BoundsResult,
    CurveResult,
    HessianMeasures,
    Geometry,
    JacobianModel,
    LinearizedModel,
    MomentumThresholdResult,
    MonteCarloResult,
    RadiusResult,
    RegionCurve,
    RegionPoint,
    RegionResult,
    ThresholdResult,
    WorstAlignment,
    __version__,
    loss_convention,
)

__all__ = [
    "Geometry",
    "LinearizedModel",
    "JacobianModel",
    "band",
    "bands",
    "band_region",
    "band_options",
    "threshold",
    "radius",
    "curve",
    "region",
    "bounds",
    "hessian_measures",
    "alignment",
    "alignment_from_jacobian",
    "worst_case_alignment",
    "montecarlo",
    "softmax_curvature",
    "apply_curvature",
    "apply_curvature_to_gram",
    "precondition",
    "adam_threshold",
    "adam_radius",
    "adam_curve",
    "adam_l2_threshold",
    "adam_l2_curve",
    "adam_l2_radius",
    "adam_l2_region",
    "adam_l2_montecarlo",
    "adam_region",
    "covariance",
    "read_matrix",
    "default_batches",
    "machine_info",
    "exact_region_min_bytes",
    "available_memory_bytes",
    "solver_options",
    "reduction_options",
    "montecarlo_options",
    "torch_lr",
    "from_torch_lr",
    "loss_convention",
    "__version__",
]


def _options_doc(title, rows):
    # Generated from the options tables (lib/foundations/options.cpp,
    # lib/geometry/reduction_options.cpp, lib/simulation/cross_check_options.cpp),
    # as the command line's help is.
    lines = ["", "", f"    {title} (keyword arguments, the fields of the C++ struct; an unknown",
             "    keyword is a TypeError, a value outside its rule a ValueError):"]
    for key, default, text, rule, words, choices in rows:
        shown = words or repr(default)
        valid = f"; one of {choices}" if choices else (f"; {rule}" if rule else "")
        lines.append(f"      {key} (default {shown}): {text}{valid}")
    return "\n".join(lines) + "\n"


_SOLVER_OPTIONS = _options_doc("Solver options (SolverOptions)", _core._solver_option_table())
_REDUCTION_OPTIONS = _options_doc("Reduction options (ReductionOptions)", _core._reduction_option_table())
_MONTECARLO_OPTIONS = _options_doc("Monte Carlo options (CrossCheckOptions)", _core._montecarlo_option_table())
_BAND_OPTIONS = _options_doc("Band options (BandOptions)", _core._band_option_table())


def solver_options():
    """The solver's keyword arguments and their defaults, as a dict (the fields of SolverOptions)."""
    return {row[0]: row[1] for row in _core._solver_option_table()}


def montecarlo_options():
    """montecarlo's keyword arguments and their defaults, as a dict (the fields of CrossCheckOptions' table)."""
    return {row[0]: row[1] for row in _core._montecarlo_option_table()}


def band_options():
    """band / bands' keyword arguments and their defaults, as a dict (the fields of BandOptions' table)."""
    return {row[0]: row[1] for row in _core._band_option_table()}


def reduction_options():
    """Geometry.from_jacobian / from_gram's keyword arguments and their defaults, as a dict
    (the fields of ReductionOptions)."""
    return {row[0]: row[1] for row in _core._reduction_option_table()}


def _doc(text):
    def wrap(f):
        f.__doc__ = text
        return f

    return wrap


try:
    Geometry.__doc__ = """The local geometry of an interpolating minimum, reduced to range(H).

    Build it with ``Geometry.from_jacobian(J, outputs=1)`` from the stacked
    per-sample Jacobian ((n*C) x p, sample-major rows) or with
    ``Geometry.from_gram(K, outputs)`` from the NTK Gram K = J J^T, with the
    reduction options below as keywords (space applies to a Jacobian,
    gram_tolerance to a Gram).

    Properties: lambda_max (sharpness of H = (1/n) J^T J), hessian_frobenius,
    hessian_trace, eta_gd (2 / lambda_max), rank, samples, outputs, params
    (None for a Gram), space, hessian_eigenvalues and factor (read-only views:
    Z with h_i = Z_i^T Z_i in the eigenbasis of H).
    """ + _REDUCTION_OPTIONS
except (AttributeError, TypeError):  # a read-only type doc: keep pybind11's
    pass


@_doc("""The exact mean-square stability threshold eta*(B).

    SGD with learning rate lr <= eta_star returns to the minimum in mean
    square; above it, it escapes. Returns a ThresholdResult: eta_star,
    converged, status, matvecs, method, residual, error_bound (eta* lies in
    [eta_star / (1 + error_bound), eta_star]), message, direction (with
    want_direction=True), to_dict() (the JSON of `sgdstab threshold`).
    weight_decay=LAMBDA: SGD with L2 weight decay, theta <- theta - lr (g_B +
    LAMBDA theta) in the library's loss convention (PyTorch's
    SGD(lr, weight_decay=wd) on MSELoss: lr here = 2 lr / C and LAMBDA =
    wd * C / 2; theory/weight_decay.md). With momentum too: the buffer takes
    g_B + LAMBDA theta, as torch.optim.SGD(momentum=..., weight_decay=...)
    (theory/momentum.md section 8; eta_mean then has lambda_max + LAMBDA).

    With momentum=BETA (PyTorch's SGD(momentum=BETA), nesterov=True for
    Nesterov; theory/momentum.md) it returns a MomentumThresholdResult:
    eta_star (stable for lr < eta_star), the certified bracket eta_low,
    eta_high, eta_mean (the full-batch limit 2(1+BETA)/lambda_max, or
    2(1+BETA)/((1+2 BETA) lambda_max) for Nesterov), stable_intervals,
    evaluations (lr, kappa), to_dict() (`sgdstab threshold --momentum`).
    scan_points > 0 also scans (0, eta_mean) for further stable intervals.""" + _SOLVER_OPTIONS)
def threshold(geometry, batch, sampling="without", *, momentum=None, nesterov=False, scan_points=0,
              weight_decay=None, **solver_options):
    if momentum is None:
        if nesterov or scan_points:
            raise ValueError("nesterov and scan_points need momentum=BETA")
        return _core.threshold(geometry, batch, sampling, weight_decay=weight_decay, **solver_options)
    return _core.momentum_threshold(geometry, batch, sampling, momentum, nesterov, scan_points,
                                    weight_decay=0.0 if weight_decay is None else weight_decay, **solver_options)


@_doc("""The spectral radius rho(T) of SGD's second-moment map at learning rate lr.

    Stable iff rho <= 1. Returns a RadiusResult: rho, stable, converged,
    status, matvecs, method, residual, message, direction, to_dict() (the
    JSON of `sgdstab radius`). momentum=BETA, nesterov=...: the radius of
    momentum SGD's second-moment map (theory/momentum.md). weight_decay=LAMBDA:
    L2 weight decay (as in threshold; with momentum too).""" + _SOLVER_OPTIONS)
def radius(geometry, lr, batch, sampling="without", *, momentum=None, nesterov=False, weight_decay=None,
           **solver_options):
    return _core.radius(geometry, lr, batch, sampling, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay, **solver_options)


@_doc("""eta*(B) for each B in batches (default 1, 2, 4, ..., n).

    Returns a CurveResult: points (a ThresholdResult each), batches, eta_star
    (a list), converged, to_dict() (the JSON of `sgdstab curve`). With
    momentum=BETA (nesterov=...): a MomentumCurveResult of
    MomentumThresholdResult points (`sgdstab curve --momentum`).
    weight_decay=LAMBDA: L2 weight decay (as in threshold; with momentum too).""" + _SOLVER_OPTIONS)
class MomentumCurveResult:
    """eta*(B) of momentum SGD for several B: points (MomentumThresholdResult each), to_dict()."""

    def __init__(self, points, as_dict):
        self.points = list(points)
        self._dict = as_dict

    @property
    def batches(self):
        return [p.batch for p in self.points]

    @property
    def eta_star(self):
        return [p.eta_star for p in self.points]

    @property
    def converged(self):
        return all(p.converged for p in self.points)

    def to_dict(self):
        return self._dict


def curve(geometry, batches=None, sampling="without", *, momentum=None, nesterov=False, weight_decay=None,
          **solver_options):
    if momentum is None:
        if nesterov:
            raise ValueError("nesterov=True needs momentum=BETA")
        return _core.curve(geometry, batches, sampling, weight_decay=weight_decay, **solver_options)
    points, as_dict = _core.momentum_curve(geometry, batches, sampling, momentum, nesterov,
                                           weight_decay=0.0 if weight_decay is None else weight_decay,
                                           **solver_options)
    return MomentumCurveResult(points, as_dict)


@_doc("""The stability region: eta*(B) for every scheme and batch size from one shared subspace.

    sampling: a scheme or a list of them (default all three); batches
    (default 1, 2, 4, ..., n); marks: a list of (lr, B) pairs to judge (rho at
    each, for each scheme); plot: a path for the SVG picture. Returns a
    RegionResult: curves (RegionCurve: sampling, points of RegionPoint with
    eta_star and the certified eta_low <= eta* <= eta_high), band(sampling, B)
    (a guaranteed interval at any real B in [1, n]), matvecs, seconds,
    converged, status, to_dict() (the JSON of `sgdstab region`).

    momentum=BETA (nesterov=...): the region of momentum SGD
    (`sgdstab region --momentum`, theory/momentum.md section 7): each point is
    the momentum threshold with its bracket, band() uses the monotonicity of
    eta*(B) in B, marks are judged by momentum SGD's radius.

    weight_decay=LAMBDA: the region of SGD with L2 weight decay (as in
    threshold), without and with replacement only (the default schemes
    then; one shared family; Bernoulli's points come from
    curve(..., "bernoulli", weight_decay=...)); with momentum every scheme
    (momentum's region with H_B + LAMBDA I).""" + _SOLVER_OPTIONS)
def region(geometry, sampling=None, batches=None, marks=None, plot=None, *, momentum=None, nesterov=False,
           weight_decay=None, **solver_options):
    if plot is not None:
        plot = str(plot)
    return _core.region(geometry, sampling, batches, marks, plot, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay, **solver_options)


@_doc("""The stability region of Adam (AdamW with weight_decay > 0) with a frozen preconditioner, in Adam's lr.

    geometry: of the preconditioned Jacobian (precondition); beta1 in (0, 1)
    (beta1 = 0 is RMSProp: region on the preconditioned geometry);
    weight_decay: AdamW's decoupled decay in the library's units (as in
    adam_threshold). The momentum region (theory/momentum.md section 7,
    theory/adaptive.md section 5) with every learning rate in Adam's: the
    points, band(), eta_mean (the JSON's full-batch limit); marks (lr, B)
    are judged by adam_radius. The JSON is that of `sgdstab region
    --optimizer adam|adamw`.""" + _SOLVER_OPTIONS)
def adam_region(geometry, sampling=None, batches=None, marks=None, plot=None, *, beta1=0.9, weight_decay=0.0,
                **solver_options):
    if plot is not None:
        plot = str(plot)
    return _core.adam_region(geometry, sampling, batches, marks, plot, beta1, weight_decay, **solver_options)


@_doc("""The stability region of Adam (beta1 > 0) or RMSProp (beta1 = 0) with its own L2 weight decay.

    Inputs as adam_l2_curve (the Jacobian NOT preconditioned, P's entries,
    weight_decay=WD in the library's loss convention); every scheme (default
    all three) and batch size from one p x p eigendecomposition, every
    learning rate in the optimizer's lr: the points, band() (monotone in B,
    as momentum's), eta_mean (the full-batch limit); marks (lr, B) are
    judged by adam_l2_radius on the whole 2p state. The JSON is that of
    `sgdstab region --optimizer adam|rmsprop --weight-decay WD`.""" + _SOLVER_OPTIONS)
def adam_l2_region(jacobian, preconditioner, sampling=None, batches=None, marks=None, plot=None, *, outputs=1,
                   beta1=0.9, weight_decay, **solver_options):
    if plot is not None:
        plot = str(plot)
    return _core.adam_l2_region(jacobian, outputs, preconditioner, sampling, batches, marks, plot, beta1,
                                weight_decay, **solver_options)


@_doc("""The exact threshold beside the analytic bounds of Wu, Wang & Su (2022).

    eta_sufficient <= eta* <= min(eta_gd, eta_necessary_rank1,
    eta_necessary_trace, eta_alignment, eta_trace_b1); eta_alignment and
    eta_trace_b1 are None where they give no constraint. Returns a
    BoundsResult; to_dict() is the JSON of `sgdstab bounds`.""" + _SOLVER_OPTIONS)
def bounds(geometry, batch, sampling="without", **solver_options):
    return _core.bounds(geometry, batch, sampling, **solver_options)


@_doc("""A certified band eta_low <= eta*(B) <= eta_high (theory/band.md): a BandResult.

    input: a Geometry (trial matrices in its r x r coordinates), or a
    LinearizedModel (Jacobian products only: JacobianModel, a subclass of
    your own implementing samples(), outputs(), params(), jacobian_times(V)
    and jacobian_transpose_times(U) [and sample_grams()], or
    sgdstab.torch.TorchModel). With a model, eta_high is the exact eta* of
    the model restricted to a parameter subspace and eta_low Wu-Ma-E's
    X = Pi bound; eta_low_kind is "certified" or "probabilistic" (holds with
    probability >= 1 - delta over the seeded random start).
    Learning rates in the library's convention (1/2, mean over samples).
    """ + _BAND_OPTIONS)
def band(input, batch, sampling="without", **band_options):
    return _core.band(input, batch, sampling, **band_options)


@_doc("""Bands for several batch sizes of one LinearizedModel, sharing the products that do not
    depend on B: a list of BandResult (batches default 1, 2, 4, ..., n).
    """ + _BAND_OPTIONS)
def bands(model, batches=None, sampling="without", **band_options):
    return _core.bands(model, batches, sampling, **band_options)


@_doc("""Bands for several sampling schemes and batch sizes of one LinearizedModel: a list
    (one per scheme, in the order given; default all three) of lists of
    BandResult (one per batch size; default 1, 2, 4, ..., n). The Krylov
    subspace of H and the per-sample Grams are made once for every scheme;
    each scheme's bands equal bands(model, batches, scheme) with the same
    options, and every result's products count the whole call.
    """ + _BAND_OPTIONS)
def band_region(model, sampling=None, batches=None, **band_options):
    return _core.band_region(model, sampling, batches, **band_options)


@_doc("""The Hessian's sharpness, non-uniformity, Frobenius norm and trace from the Gram alone.

    gram: K = J J^T ((n*C) x (n*C), sample-major, symmetric PSD). Returns a
    HessianMeasures: sharpness = lambda_max(H), non_uniformity =
    sqrt(lambda_max((1/n) sum h_i^2 - H^2)) (Wu, Ma & E 2018),
    hessian_frobenius = |H|_F, hessian_trace, with H = J^T J / n and h_i =
    J_i^T J_i in the library's convention (1/2, mean over samples); the
    report (converged, status, message, method, iterations, matvecs) and
    to_dict(). Without K's eigendecomposition: Lanczos on K and, for the
    non-uniformity, on N K in the K inner product (theory/bounds.md,
    section 7); dense (LAPACK) below dense_max_dimension rows.""" + _SOLVER_OPTIONS)
def hessian_measures(gram, outputs, **solver_options):
    return _core.hessian_measures(gram, outputs, **solver_options)


@_doc("""The alignment factor mu of SGD noise, from the Gram and the residuals.

    mu = Tr(Sigma_1 G) / (2 L |G|_F^2), Sigma_1 the single-sample SGD noise
    covariance, G = J^T J / n, L the loss; gram is K = J J^T ((n*C) x (n*C)),
    residuals the n*C values f(x_i) - y_i, sample-major.""")
def alignment(gram, outputs, residuals):
    return _core.alignment(gram, outputs, residuals)


@_doc("""mu computed in parameter space from the Jacobian ((n*C) x p): Sigma_1 and G formed explicitly.""")
def alignment_from_jacobian(jacobian, outputs, residuals):
    return _core.alignment_from_jacobian(jacobian, outputs, residuals)


@_doc("""mu_*: the minimum of mu over residual directions in range(H) (WorstAlignment: mu_star, status).""")
def worst_case_alignment(geometry):
    return _core.worst_case_alignment(geometry)


@_doc("""Monte Carlo cross-check of the exact answer at (lr, batch).

    Simulates linearized SGD (steps, trajectories) and estimates rho from
    sampled batches (blocks); compares both with the exact rho(T) and second
    moments. sampling also accepts "reshuffle" (no exact answer: verdict
    inconclusive). Returns a MonteCarloResult: rho, eta_star, rho_hat,
    rho_hat_interval, verdict ("agree", "disagree", "inconclusive"), status,
    reason, to_dict() (the JSON of `sgdstab montecarlo`). momentum=BETA
    (nesterov=...): every part is momentum SGD's (`sgdstab montecarlo --momentum`).
    weight_decay=LAMBDA: every part is SGD with L2 weight decay's (as in threshold; with momentum too).""" + _MONTECARLO_OPTIONS)
def montecarlo(geometry, lr, batch, sampling="without", *, momentum=None, nesterov=False, weight_decay=None,
               **options):
    return _core.montecarlo(geometry, lr, batch, sampling, momentum=momentum, nesterov=nesterov,
                            weight_decay=weight_decay, **options)


@_doc("""montecarlo for Adam's (beta1 > 0) or RMSProp's (beta1 = 0) own L2 weight decay, P frozen.

    Inputs as adam_l2_curve (the Jacobian NOT preconditioned, P's entries,
    weight_decay=WD > 0 in the library's loss convention); lr and eta_star in
    the optimizer's lr. The simulation, the exact moments and the sampled
    operator run on the whole 2p state of phi = P^{1/2} theta (|phi_t|^2 from
    phi_0 ~ N(0, I/p)); rho is adam_l2_radius's. Dense in p (a few hundred).
    The JSON is that of `sgdstab montecarlo --optimizer adam|rmsprop
    --weight-decay WD`.""" + _MONTECARLO_OPTIONS)
def adam_l2_montecarlo(jacobian, preconditioner, lr, batch, sampling="without", *, outputs=1, beta1=0.9,
                       weight_decay, **options):
    return _core.adam_l2_montecarlo(jacobian, outputs, preconditioner, lr, batch, sampling, beta1, weight_decay,
                                    **options)


@_doc("""Per-sample curvature of cross-entropy: S_i = diag(p_i) - p_i p_i^T.

    probabilities: n x C softmax probabilities at the point (rows sum to 1).
    Returns the (n C) x C matrix of the S_i stacked, for apply_curvature
    (theory/loss_curvature.md).""")
def softmax_curvature(probabilities):
    return _core.softmax_curvature(probabilities)


@_doc("""The Jacobian of a loss with per-sample curvature in the square loss's form: S^{1/2} J.

    jacobian: (n C) x p; curvature: (n C) x C, the S_i stacked (e.g.
    softmax_curvature(p), or w_i * I for a weighted square loss). Every
    routine applied to Geometry.from_jacobian(apply_curvature(J, S, C), C)
    analyzes that loss (theory/loss_curvature.md).""")
def apply_curvature(jacobian, curvature, outputs):
    return _core.apply_curvature(jacobian, curvature, outputs)


@_doc("""The Gram of apply_curvature: S^{1/2} K S^{1/2} for K = J J^T.""")
def apply_curvature_to_gram(gram, curvature, outputs):
    return _core.apply_curvature_to_gram(gram, curvature, outputs)


@_doc("""J P^{-1/2} for a frozen diagonal preconditioner P (p entries, each > 0).

    For RMSProp and Adam, P = sqrt(v_hat) + eps (torch: exp_avg_sq / (1 -
    beta2^t), square root, plus eps). On the result, RMSProp is plain SGD at
    its lr and Adam is adam_threshold's (theory/adaptive.md).""")
def precondition(jacobian, preconditioner):
    return _core.precondition(jacobian, preconditioner)


@_doc("""eta* of Adam with a frozen preconditioner, in Adam's lr.

    geometry: of the preconditioned Jacobian (precondition). Adam with beta1
    is heavy-ball momentum SGD at lr (1 - beta1) there (theory/adaptive.md):
    the result is a MomentumThresholdResult with every learning rate
    converted to Adam's (eta_star, eta_low, eta_high, eta_mean =
    (2 + 2 beta1) / ((1 - beta1) lambda_max(P^{-1} H)), the full-batch limit).
    beta1 = 0 is RMSProp (`sgdstab threshold --optimizer adam`).
    weight_decay=WD > 0: AdamW's decoupled decay theta <- (1 - lr WD) theta
    before the Adam step, in the library's units (lr WD is the fraction
    removed per step: torch's wd times lr_torch / lr, wd C / 2 from
    MSELoss; sgdstab.torch.analyze converts for you;
    theory/adaptive.md section 5): eta_mean = 2 (1 + beta1) / ((1 - beta1)
    lambda_max(P^{-1} H) + (1 + beta1) WD), and the JSON says optimizer
    "adamw". Adam's own (L2) weight_decay is adam_l2_threshold's.""" + _SOLVER_OPTIONS)
def adam_threshold(geometry, batch, sampling="without", *, beta1=0.9, weight_decay=0.0, scan_points=0,
                   **solver_options):
    return _core.adam_threshold(geometry, batch, sampling, beta1, scan_points, weight_decay, **solver_options)


@_doc("""eta* of Adam (beta1 > 0) or RMSProp (beta1 = 0) with its own L2 weight decay, for each B in
    batches: a MomentumCurveResult in the optimizer's lr.

    jacobian: the stacked per-sample Jacobian ((n C) x p), NOT preconditioned;
    preconditioner: P's p entries (sqrt(v_hat) + eps). weight_decay=WD is
    torch.optim.Adam/RMSprop's weight_decay in the library's loss convention
    (g + WD theta before the division by P; sgdstab.torch.analyze converts).
    WD P^{-1} does not commute with P^{-1/2} H P^{-1/2}, so the mean dynamics
    live on the whole parameter space: one p x p eigendecomposition, then
    O(p^2 r) per step (p up to a few thousand; theory/adaptive.md section 6).
    eta_mean is the full-batch limit 2 (1 + beta1) / ((1 - beta1)
    lambda_max(P^{-1}(H + WD))). AdamW's decoupled decay is adam_threshold's
    weight_decay.""" + _SOLVER_OPTIONS)
def adam_l2_curve(jacobian, preconditioner, batches, sampling="without", *, outputs=1, beta1=0.9, weight_decay,
                  **solver_options):
    points, as_dict = _core.adam_l2_curve(jacobian, outputs, preconditioner, list(batches), sampling, beta1,
                                          weight_decay, **solver_options)
    return MomentumCurveResult(points, as_dict)


@_doc("""adam_l2_curve at one batch size: its point (a MomentumThresholdResult).""" + _SOLVER_OPTIONS)
def adam_l2_threshold(jacobian, preconditioner, batch, sampling="without", *, outputs=1, beta1=0.9, weight_decay,
                      **solver_options):
    return adam_l2_curve(jacobian, preconditioner, [batch], sampling, outputs=outputs, beta1=beta1,
                         weight_decay=weight_decay, **solver_options).points[0]


@_doc("""rho of Adam's second-moment map at Adam's lr (frozen preconditioner; geometry as in adam_threshold;
    weight_decay > 0: AdamW's decoupled decay).""" + _SOLVER_OPTIONS)
def adam_radius(geometry, lr, batch, sampling="without", *, beta1=0.9, weight_decay=0.0, **solver_options):
    return _core.adam_radius(geometry, lr, batch, sampling, beta1, weight_decay, **solver_options)


@_doc("""rho of Adam's (beta1 > 0) or RMSProp's (beta1 = 0) second-moment map with its own L2 weight decay at
    the optimizer's lr, on the whole 2p-dimensional state (inputs as adam_l2_curve; stable iff rho <= 1).""" +
      _SOLVER_OPTIONS)
def adam_l2_radius(jacobian, preconditioner, lr, batch, sampling="without", *, outputs=1, beta1=0.9, weight_decay,
                   **solver_options):
    return _core.adam_l2_radius(jacobian, outputs, preconditioner, lr, batch, sampling, beta1, weight_decay,
                                **solver_options)


@_doc("""adam_threshold for each B in batches (default 1, 2, 4, ..., n): a MomentumCurveResult.""" +
      _SOLVER_OPTIONS)
def adam_curve(geometry, batches=None, sampling="without", *, beta1=0.9, weight_decay=0.0, **solver_options):
    points, as_dict = _core.adam_curve(geometry, batches, sampling, beta1, weight_decay, **solver_options)
    return MomentumCurveResult(points, as_dict)


class CovarianceResult:
    """The stationary covariance of linearized SGD (`sgdstab covariance`): trace, top_eigenvalues,
    excess_loss, rho, weight_decay, gradient_noise_trace, mean_gradient_norm, converged, status, message, covariance
    (Sigma in reduced coordinates, r x r, where H = diag(geometry.hessian_eigenvalues)), to_dict()."""

    def __init__(self, as_dict, sigma):
        self._dict = as_dict
        self.covariance = sigma
        for key in ("lr", "batch", "sampling", "rho", "weight_decay", "trace", "top_eigenvalues", "excess_loss",
                    "gradient_noise_trace", "mean_gradient_norm", "converged", "status", "message", "iterations"):
            setattr(self, key, as_dict[key])

    def to_dict(self):
        return self._dict


@_doc("""The stationary second moment of SGD at a minimum that does not interpolate (theory/covariance.md).

    residuals: the n C values f(x_i) - y_i at the minimum (their gradients
    J_i^T r_i must sum to zero within gradient_tolerance). Linearized with
    the Gauss-Newton Hessian, SGD at lr with batch size B fluctuates with
    Sigma = lim E[delta delta^T], the solution of (I - T) Sigma = lr^2
    E[g_B g_B^T] (Mulayoff & Michaeli 2024, Thm 4-5), found by conjugate
    gradients (tolerance, max_iterations). Needs rho(T) < 1 at lr (else
    ValueError naming rho). Returns a CovarianceResult; excess_loss =
    1/2 tr(H Sigma) is the expected loss above the minimum's.

    Any loss: residuals=None, gradients=G (n x p, the per-sample gradients
    g_i at the minimum) and jacobian=J (the matrix the geometry was built
    from, e.g. apply_curvature(J, softmax_curvature(P), C) for
    cross-entropy; `sgdstab covariance --residual-gradients`).

    momentum=BETA (nesterov=...): momentum SGD as torch.optim.SGD runs it
    (`sgdstab covariance --momentum`, theory/covariance.md section 7):
    Sigma is the delta block of the stationary second moment, rho(T) that
    of momentum_radius.

    weight_decay=LAMBDA with theta=THETA (p values) and jacobian=J: SGD with
    L2 weight decay, theta <- theta - lr (g_B + LAMBDA theta), at THETA, a
    minimum of the loss + LAMBDA/2 |theta|^2 (theory/covariance.md section
    8; `sgdstab covariance --weight-decay --theta`); rho(T) that of
    radius(weight_decay=) (with momentum= too: the buffer takes g + LAMBDA
    theta). excess_loss is the loss's (the regularized objective's adds
    LAMBDA/2 trace).""")
def covariance(geometry, residuals, lr, batch, sampling="without", *, top=5, gradient_tolerance=1e-6,
               tolerance=1e-10, max_iterations=5000, gradients=None, jacobian=None, momentum=None, nesterov=False,
               weight_decay=0.0, theta=None):
    if nesterov and momentum is None:
        raise ValueError("nesterov=True needs momentum=BETA")
    mo = {"momentum": 0.0 if momentum is None else momentum, "nesterov": bool(nesterov)}
    if not (weight_decay >= 0 and _math.isfinite(weight_decay)):
        raise ValueError(f"weight_decay: must be finite and >= 0, got {weight_decay}")
    if (theta is None) != (not weight_decay):
        raise ValueError("weight_decay=LAMBDA > 0 and theta= (the minimum of the regularized loss) go together")
    if weight_decay:
        if jacobian is None:
            raise ValueError("weight_decay= needs jacobian= (theta is put in the geometry's coordinates through it)")
        mo.update(weight_decay=float(weight_decay), theta=theta)
        if gradients is None:  # residuals, with the Jacobian only for theta
            if residuals is None:
                raise ValueError("give residuals, or gradients= with jacobian= (and residuals=None)")
            as_dict, sigma = _core.covariance(geometry, residuals, lr, batch, sampling, top, gradient_tolerance,
                                              tolerance, max_iterations, jacobian=jacobian, **mo)
            return CovarianceResult(as_dict, sigma)
    if gradients is not None or jacobian is not None:
        if residuals is not None or gradients is None or jacobian is None:
            raise ValueError("give residuals, or gradients= with jacobian= (and residuals=None)")
        as_dict, sigma = _core.covariance_from_gradients(geometry, jacobian, gradients, lr, batch, sampling, top,
                                                         gradient_tolerance, tolerance, max_iterations, **mo)
    else:
        as_dict, sigma = _core.covariance(geometry, residuals, lr, batch, sampling, top, gradient_tolerance,
                                          tolerance, max_iterations, **mo)
    return CovarianceResult(as_dict, sigma)


@_doc("""A matrix from .npy (float64 or float32, C or Fortran order) or CSV, as the command line reads it.

    Raises OSError on a missing, truncated or corrupt file.""")
def read_matrix(path):
    return _core.read_matrix(str(path))


def exact_region_min_bytes(geometry, **solver_options):
    """The least memory (bytes) ``region`` needs for this geometry in host
    memory (plain SGD), beside the geometry: the operator's scratch, the
    single-precision copy of the factor when the mixed start runs, and the
    smallest shared subspace (4 vectors of length r(r+1)/2; the dense matrix
    when the method resolves to dense). With ``memory_limit_bytes`` at or
    above it the region runs; below it, it raises MemoryError before it
    computes anything (C++ ``exact_region_min_bytes``, region.hpp)."""
    return _core.exact_region_min_bytes(geometry, **solver_options)


def available_memory_bytes():
    """Bytes this process may still allocate, as every budget check of the
    library reads it (C++ ``available_memory_bytes``, memory.hpp): the least
    of MemAvailable, what the memory cgroup still allows (containers, Slurm
    jobs) and what ``ulimit -v`` (RLIMIT_AS) still allows; None when none of
    them can be read."""
    return _core.available_memory_bytes()


def machine_info():
    """The machine a timing was measured on, as a dict: cpu (the model name
    of /proc/cpuinfo), logical_cpus, library_threads (the library's own
    parallel loops), blas (OpenBLAS's configuration string, or "unknown (not
    OpenBLAS)"), blas_core (OpenBLAS's kernel set), blas_threads and
    openblas_coretype (the environment variable, None when unset). The same
    record as the "performance" block of every JSON result of the command
    line; record it with every figure you keep."""
    return _core.machine_info()


@_doc("""The default batch sizes 1, 2, 4, ... below n, then n.""")
def default_batches(samples):
    return _core.default_batches(samples)


def torch_lr(eta, outputs):
    """The learning rate of PyTorch's MSELoss(reduction="mean") equivalent to ours.

    Ours: L = (1/n) sum_i 1/2 |f_i - y_i|^2. PyTorch's: L_t = (1/(n C)) sum |f_i - y_i|^2
    = (2/C) L, so gradient steps agree when lr_torch = (C/2) lr.
    """
    return 0.5 * outputs * eta


def from_torch_lr(lr_torch, outputs):
    """Our learning rate equivalent to PyTorch's MSELoss(reduction="mean") lr_torch."""
    return 2.0 * lr_torch / outputs


def __getattr__(name):
    # sgdstab.torch is optional (it needs PyTorch): imported on first use.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'sgdstab' has no attribute {name!r}")
