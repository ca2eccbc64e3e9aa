"""Perturb: a user's MSE becomes an error on its received task vector (PAPER-NOTES sec. 3).

Every function here is pure and seeded. The work is done one parameter tensor at a time, in place,
on ``[R, n_i]`` slices (:func:`perturb_slice_`, driven by a :class:`Link` built once per drop by
:func:`link`), so a caller can stream a zoo whose task vectors do not fit in memory as a ``[T, P]``
float32 stack (ViT-B/32: 88 M parameters per task); :func:`perturb` is the whole-stack wrapper of the
same loop. Every (user, tensor) pair draws from its own generator, seeded from
``(seed, user index, tensor index)`` (:func:`stream_seed`), so a user's error does not depend on which
other users are perturbed, on the order the tensors are visited, or on how rows are grouped; the
only Python loops are over tensors and users.

Three error models, chosen by ``PerturbConfig.model``:

``gaussian`` (the paper's)
    ``tau_hat_q = tau_q + eps_q`` with ``eps_q ~ N(0, mse_q * 10^(-g/10) * scale_q^2)`` independently
    per user and per parameter. ``scale_q`` follows ``PerturbConfig.scale`` and ``g`` is
    ``PerturbConfig.symbol_gain_db``, the reference amplitude (see :func:`tensor_noise_std`).

``correlated`` (ours)
    All users transmit at once through the same receiver, so their errors are jointly Gaussian with
    the MMSE-SIC receiver's Q x Q complex error covariance ``C = E[e e^H]``. How a complex symbol
    error becomes an error on real parameters: each complex symbol carries two consecutive
    parameters, the even one on I (real part), the odd one on Q (imaginary part), and the error of
    every symbol slot is a fresh draw of ``e ~ CN(0, 2 K)`` with ``K_qr = C_qr / sqrt(C_qq C_rr)``
    the normalised (coherence) matrix. Hence, per parameter, each user's error has unit variance
    before scaling, ``Cov(Re e_q, Re e_r) = Cov(Im e_q, Im e_r) = Re K_qr`` (the correlation of two
    users' errors on the same parameter, which is what cosine similarities see) and
    ``Cov(Re e_q, Im e_r) = -Im K_qr`` (I/Q cross-talk between neighbouring parameters). Each row is
    then multiplied by the same per-element std as ``gaussian``, so user q's variance is exactly
    ``mse_q * scale_q^2``: only the correlation is taken from ``C``, the variances always come from
    ``mse`` (``C``'s diagonal is the same MMSE). The standard normals are drawn exactly as in
    ``gaussian`` and a diagonal ``C`` gives ``K = I``, so the model reduces to ``gaussian`` bit for
    bit (same seed, same numbers).
    Caveat (a property of the receiver, not of this code): with perfect cancellation, MMSE-SIC
    errors are mutually uncorrelated (user r's error is orthogonal to everything an earlier user
    still sees), so the SIC receiver's ``C`` is diagonal and this model *is* ``gaussian``; see
    ``test_mmse_sic_errors_are_uncorrelated_so_correlated_reduces_to_gaussian``. Cross-user
    correlation appears with a receiver without SIC (the joint linear MMSE covariance).

``digital`` (ours)
    Each tensor of each task vector is quantised uniformly to ``bits_per_param`` bits over its own
    [min, max] (the two floats travel as error-free side information); each word is cut into
    6-bit Gray-mapped 64-QAM symbols (most significant symbol first; per symbol, the high 3 bits
    pick the I level and the low 3 bits the Q level, each through a 3-bit Gray code of the 8 PAM
    levels). A square 64-QAM symbol is two independent 8-PAM decisions, so errors are drawn per
    axis with the exact AWGN probabilities at the user's SINR ``g`` (= Es/N0 after the MMSE
    filter): an inner level slips to each neighbour with probability ``Q(sqrt(3 g / 63))``, an edge
    level to its one neighbour with the same probability. Averaged over equiprobable symbols that is
    exactly the square-QAM SER ``1 - (1 - 2 (1 - 1/8) Q(sqrt(3 g / 63)))^2``; every error lands on
    the neighbouring constellation point (a diagonal one when both axes fail), which under Gray
    mapping flips one bit per failed axis. At low error rates only the events are drawn (a
    Bernoulli process from geometric gaps, so a clean link costs almost nothing); at high ones
    every axis is drawn at once. Words are decoded and dequantised. Without
    ``sinr_db`` the SINR is the receiver's own, ``1 / mse_q - 1`` (MMSE = 1 / (1 + SINR)).
    ``scale`` does not apply (the quantiser normalises each tensor itself).

``mse_q == 0`` returns row q untouched for every model (an ideal link; for ``digital`` this also
skips quantisation, so a zero-noise run equals the clean fusion exactly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .calibration import SYMBOL_GAIN_DB_RANGE
from ..errors import InputError
from .taskvec import ParamLayout, check_seed, check_stack, stream_seed

MODELS = ("gaussian", "correlated", "digital", "coded")
SCALES = ("absolute", "per_tensor", "per_vector", "peak")
GAIN_DB_RANGE = SYMBOL_GAIN_DB_RANGE  # checked here too for direct callers
BITS_PER_PARAM = (6, 12, 18, 24)
BITS_PER_SYMBOL = 6  # 64-QAM
QAM_ORDER = 64
PAM_LEVELS = 8  # per axis of square 64-QAM

# 3-bit Gray code of the 8 PAM levels: level i carries bits GRAY[i]; adjacent levels differ in one bit.
GRAY = torch.tensor([i ^ (i >> 1) for i in range(PAM_LEVELS)], dtype=torch.int64)
GRAY_INVERSE = torch.argsort(GRAY)  # bits -> level


# ----------------------------------------------------------------------------------- validation

def _check_choice(value, allowed: tuple, field: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(field, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _check_mse(mse, n_users: int) -> np.ndarray:
    try:
        arr = np.array(mse.detach().cpu() if isinstance(mse, torch.Tensor) else mse, dtype=np.float64)  # a copy: ours
    except (TypeError, ValueError):
        raise InputError("perturb.mse", "must be a sequence of numbers, one per user") from None
    if arr.shape != (n_users,):
        raise InputError("perturb.mse", f"needs one value per user: shape ({n_users},), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError("perturb.mse", "every MSE must be finite and >= 0")
    return arr


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


# ----------------------------------------------------------------------------------- gaussian

def reference_squares(vectors: torch.Tensor, layout: ParamLayout, scale: str) -> torch.Tensor:
    """[T, n_tensors] float64: :func:`reference_square` of every tensor of every row of ``vectors`` ([T, P])."""
    return torch.stack([reference_square(vectors[:, a:b], scale)
                        for a, b in zip(layout.offsets, layout.offsets[1:])], dim=1)


def reference_square(x: torch.Tensor, scale: str) -> torch.Tensor:
    """[T] float64: the square of what one tensor's error is relative to, for each row of ``x`` ([T, n_i]):
    its mean square (``per_tensor``, ``per_vector``: the vector's is their size-weighted mean) or its
    largest square (``peak``: a transmitter that maps a tensor onto a fixed constellation without
    clipping divides by its largest magnitude). 0 for an empty tensor; unused by ``absolute``."""
    if x.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=torch.float64)
    if scale == "peak":
        return x.abs().amax(dim=1).to(torch.float64).square()
    return torch.linalg.vector_norm(x, dim=1, dtype=torch.float64).square() / x.shape[1]


def check_gain_db(gain_db) -> float:
    lo, hi = GAIN_DB_RANGE
    if isinstance(gain_db, bool) or not isinstance(gain_db, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(gain_db)) or not lo <= float(gain_db) <= hi:
        raise InputError("perturb.symbol_gain_db", f"must be a number of dB in [{lo:g}, {hi:g}]; got {gain_db!r}")
    return float(gain_db)


def tensor_noise_std(power: Optional[torch.Tensor], mse, layout: ParamLayout, scale: str,
                     gain_db: float = 0.0) -> torch.Tensor:
    """[T, n_tensors] float32 std from the clean vectors' per-tensor reference squares ``power`` ([T, n_tensors]
    float64, as :func:`reference_square` gives for ``scale``; unused by ``absolute``).

    The error variance of an element is ``mse_q * 10^(-gain_db/10) * power``: a transmitter applies the
    amplitude gain ``gain_db`` to each normalised parameter before it becomes a unit-power symbol, and
    the receiver divides it out, so the symbol's MSE shrinks by the gain's power. ``per_vector`` takes the
    whole vector's mean square as the size-weighted mean of the tensors'."""
    gain = 10.0 ** (-check_gain_db(gain_db) / 10.0)
    var = torch.as_tensor(np.asarray(mse, dtype=np.float64) * gain).unsqueeze(1)
    n_tensors = len(layout.names)
    if scale == "absolute":
        return var.sqrt().to(torch.float32).expand(-1, n_tensors).contiguous()
    if power is None or power.shape != (var.shape[0], n_tensors):
        raise InputError("perturb.power", f"needs the [{var.shape[0]}, {n_tensors}] per-tensor reference squares")
    power = power.to(torch.float64)
    if scale == "per_vector":
        sizes = _tensor_sizes(layout).to(torch.float64)
        whole = (power * sizes).sum(1, keepdim=True) / max(layout.numel, 1)
        return (var * whole).sqrt().to(torch.float32).expand(-1, n_tensors).contiguous()
    return (var * power).sqrt().to(torch.float32)


def tensor_std(power: Optional[torch.Tensor], tensor_mse: np.ndarray, layout: ParamLayout, scale: str,
               gain_db: float = 0.0) -> torch.Tensor:
    """:func:`tensor_noise_std` with one MSE per (user, tensor) ([T, n_tensors]): the error std of each
    tensor at the MSE its user had while that tensor was sent."""
    n_tensors = len(layout.names)
    if tensor_mse.shape != (tensor_mse.shape[0], n_tensors):
        raise InputError("perturb.tensor_mse", f"needs one MSE per (user, tensor): [T, {n_tensors}]")
    out = torch.empty(tensor_mse.shape, dtype=torch.float32)
    levels = np.unique(tensor_mse, axis=1)            # few distinct power levels: one pass each
    for level in levels.T:
        cols = np.all(tensor_mse == level[:, None], axis=0)
        out[:, torch.from_numpy(cols)] = tensor_noise_std(power, level, layout, scale, gain_db)[:, torch.from_numpy(cols)]
    return out


def _tensor_sizes(layout: ParamLayout) -> torch.Tensor:
    return torch.tensor(np.diff(layout.offsets), dtype=torch.int64)


def _standard_normal(n: int, gen: torch.Generator) -> torch.Tensor:
    # An even count so `correlated` can pair them into I/Q and consume the very same draw.
    return torch.randn(n + n % 2, generator=gen, dtype=torch.float32)


# ----------------------------------------------------------------------------------- correlated

def correlation_factor(error_covariance, n_users: int) -> Optional[np.ndarray]:
    """Complex L with ``L L^H = K``, K the unit-diagonal coherence of the error covariance.

    Returns None when the covariance is diagonal (independent users: the ``gaussian`` model).
    Users with zero error power are left uncorrelated with everyone.
    """
    field = "perturb.error_covariance"
    try:
        cov = np.asarray(error_covariance, dtype=np.complex128)
    except (TypeError, ValueError):
        raise InputError(field, "must be a Q x Q (complex) matrix") from None
    if cov.shape != (n_users, n_users):
        raise InputError(field, f"must be {n_users} x {n_users} (one row per user); got {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise InputError(field, "contains NaN or infinite entries")
    size = max(float(np.abs(cov).max()), 1e-300)
    if np.abs(cov - cov.conj().T).max() > 1e-6 * size:
        raise InputError(field, "must be Hermitian")
    diag = cov.diagonal().real
    if np.any(diag < -1e-9 * size):
        raise InputError(field, "diagonal (error powers) must be >= 0")
    if np.count_nonzero(cov - np.diag(cov.diagonal())) == 0:
        return None
    d = np.sqrt(np.clip(diag, 0.0, None))
    live = d > 0
    coh = np.eye(n_users, dtype=np.complex128)
    coh[np.ix_(live, live)] = cov[np.ix_(live, live)] / np.outer(d[live], d[live])
    coh = 0.5 * (coh + coh.conj().T)
    np.fill_diagonal(coh, 1.0)
    if np.abs(coh - np.eye(n_users)).max() == 0:
        return None
    try:
        return np.linalg.cholesky(coh)
    except np.linalg.LinAlgError:
        pass
    # Semi-definite (e.g. fewer noise dimensions than users): a square-root factor from eigh.
    w, v = np.linalg.eigh(coh)
    if w.min() < -1e-6 * max(w.max(), 1.0):
        raise InputError(field, f"is not positive semi-definite (eigenvalue {w.min():.3g} of its coherence)")
    factor = v * np.sqrt(np.clip(w, 0.0, None))
    return factor / np.linalg.norm(factor, axis=1, keepdims=True)  # unit diagonal of L L^H again


def _correlated_noise(z: torch.Tensor, factor: np.ndarray, rows: list[int]) -> torch.Tensor:
    """Even/odd columns of z ([Q, 2m], every user's draw) are Re/Im of unit complex normals (times sqrt 2);
    returns Re/Im of (L z) for the users `rows` only ([len(rows), 2m])."""
    lr = torch.as_tensor(factor.real[rows], dtype=torch.float32)
    li = torch.as_tensor(factor.imag[rows], dtype=torch.float32)
    a, b = z[:, 0::2], z[:, 1::2]
    out = torch.empty(len(rows), z.shape[1], dtype=torch.float32)
    out[:, 0::2] = lr @ a - li @ b
    out[:, 1::2] = li @ a + lr @ b
    return out


# ----------------------------------------------------------------------------------- digital

def q_function(x):
    """Gaussian tail Q(x) = P(N(0,1) > x), elementwise on numpy arrays (float64)."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    return (0.5 * torch.special.erfc(x / math.sqrt(2.0))).numpy()


def qam64_axis_tail(sinr) -> np.ndarray:
    """Q(d / 2 sigma) of one 8-PAM axis of unit-energy 64-QAM at linear SINR (Es/N0)."""
    sinr = np.asarray(sinr, dtype=np.float64)
    return q_function(np.sqrt(3.0 * np.clip(sinr, 0.0, None) / (QAM_ORDER - 1)))


def qam64_ser(sinr) -> np.ndarray:
    """Exact symbol error rate of Gray-mapped square 64-QAM on AWGN at linear SINR (Es/N0)."""
    p_axis = 2.0 * (1.0 - 1.0 / PAM_LEVELS) * qam64_axis_tail(sinr)
    return 1.0 - (1.0 - p_axis) ** 2


def qam64_ber(sinr) -> np.ndarray:
    """Bit error rate of this link's error model: one flipped bit per failed axis, 6 bits a symbol."""
    return 2.0 * 2.0 * (1.0 - 1.0 / PAM_LEVELS) * qam64_axis_tail(sinr) / BITS_PER_SYMBOL


def _bernoulli_positions(n_trials: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Sorted positions of the successes of n_trials Bernoulli(p) trials, via geometric gaps."""
    if p <= 0.0 or n_trials == 0:
        return torch.empty(0, dtype=torch.int64)
    if p >= 1.0:
        return torch.arange(n_trials)
    chunks, last = [], -1.0
    expected = n_trials * p
    while True:
        m = int(expected + 8.0 * math.sqrt(expected) + 16)
        gaps = torch.empty(m, dtype=torch.float64).geometric_(p, generator=gen)  # >= 1
        pos = last + torch.cumsum(gaps, 0)
        chunks.append(pos[pos < n_trials])
        if pos[-1] >= n_trials:
            break
        last = float(pos[-1])
    return torch.cat(chunks).to(torch.int64)


def _gray_decode3(bits: torch.Tensor) -> torch.Tensor:
    return bits ^ (bits >> 1) ^ (bits >> 2)


def _gray_encode(level: torch.Tensor) -> torch.Tensor:
    return level ^ (level >> 1)


# Above this event probability per axis, drawing every trial beats drawing the gaps between events.
_DENSE_EVENT_PROB = 0.15


def _field_shifts(bits: int) -> torch.Tensor:
    """Bit offset of every 3-bit axis field of a word: symbol 0 (most significant) first, I before Q."""
    n_sym = bits // BITS_PER_SYMBOL
    return torch.tensor([bits - BITS_PER_SYMBOL * (k + 1) + 3 * (axis == 0) for k in range(n_sym) for axis in (0, 1)],
                        dtype=torch.int32)


def _transmit_words(words: torch.Tensor, bits: int, sinr: float, gen: torch.Generator) -> torch.Tensor:
    """Send int32 words of `bits` bits over Gray-mapped 64-QAM at linear SINR; returns received words.

    Each axis of each symbol is one trial: with probability 2 Q the level slips by -1 or +1
    (equally likely); a slip off the edge of the 8 levels is no error (clamped), which leaves an
    edge level its exact error probability Q and an inner level 2 Q. Each failed axis rewrites its
    own 3-bit field with the neighbouring level's Gray code: one bit flip.
    """
    shifts = _field_shifts(bits)
    tail = float(qam64_axis_tail(sinr))
    p = min(2.0 * tail, 1.0)
    if p <= 0.0:
        return words
    if p > _DENSE_EVENT_PROB:
        fields = (words.unsqueeze(1) >> shifts) & 7  # [P, fields]
        u = torch.rand(fields.shape, generator=gen)
        step = (u < p).to(torch.int32) - 2 * (u < tail).to(torch.int32)  # -1 below Q, +1 in [Q, 2Q)
        moved = (_gray_decode3(fields) + step).clamp_(0, PAM_LEVELS - 1)
        return words + ((_gray_encode(moved) - fields) << shifts).sum(1, dtype=torch.int32)
    # Sparse link: draw only the events (geometric gaps between them).
    n_fields = len(shifts)
    pos = _bernoulli_positions(words.numel() * n_fields, p, gen)
    if pos.numel() == 0:
        return words
    param = pos // n_fields
    shift = shifts[pos % n_fields]
    field = (words[param] >> shift) & 7
    step = torch.randint(0, 2, (pos.numel(),), generator=gen, dtype=torch.int32) * 2 - 1
    moved = (_gray_decode3(field) + step).clamp_(0, PAM_LEVELS - 1)
    # Each (word, field) is hit at most once and owns its 3 bits, so adding the field
    # differences rewrites exactly those bits (no carries).
    return words.index_add(0, param, ((_gray_encode(moved) - field) << shift).to(words.dtype))


def _digital_slice_(x: torch.Tensor, bits: int, sinr: float, gen: torch.Generator,
                    coded: "CodedLink | None" = None) -> torch.Tensor:
    """Quantise one tensor of one user (1-D, float32) over its own [min, max], send, dequantise: in place.
    Sent over uncoded 64-QAM at `sinr`, or over a coded link with one user's decoded error rates
    (`coded`: whole codewords fail, or bits flip alone; see `_coded_errors`)."""
    if x.numel() == 0:
        return x
    lo, hi = torch.aminmax(x)
    top = 2**bits - 1
    lo64 = float(lo)
    step = (float(hi) - lo64) / top  # 0 for a constant tensor
    safe = step if step > 0 else 1.0
    # float64: a 24-bit word does not fit a float32 mantissa with room to round
    words = x.to(torch.float64).sub_(lo64).div_(safe).round_().clamp_(0, top).to(torch.int32)
    erased = None
    if coded is None:
        words = _transmit_words(words, bits, sinr, gen)
    else:
        words, erased = _coded_errors(words, bits, coded, gen)
    x.copy_(words.to(torch.float64).mul_(step).add_(lo64))
    if erased is not None:
        x[erased] = 0.0  # a detected failure: the receiver takes no update there (a task vector's prior mean)
    return x


CODED_ERRORS = ("codeword", "erasure", "independent")  # how a failed codeword reaches the fusion


@dataclass(frozen=True)
class CodedLink:
    """One user's decoded error rates on a coded link (phy.coded_rates) and how failures show.
    `block_bits`: information bits per codeword; the tensor's bit stream (word by word, `bits` each)
    is cut into codewords of that many bits."""
    ber: float
    bler: float
    block_bits: int
    errors: str = "codeword"   # CODED_ERRORS


def _coded_errors(words: torch.Tensor, bits: int, link: "CodedLink", gen: torch.Generator):
    """The words after decoding, and the words erased (or None).

    - "independent": every bit flipped alone at the BER;
    - "codeword": each codeword fails at the BLER, and a failed one carries bit errors at the rate
      seen inside failed codewords, BER / BLER (the mean BER is the same; the errors cluster);
    - "erasure": as "codeword", but the receiver detects each failure (a CRC) and erases the words
      that have any bit in a failed codeword."""
    if link.errors == "independent":
        return _flip_bits(words, bits, link.ber, gen), None
    n_bits = words.numel() * bits
    k = link.block_bits
    failed = _bernoulli_positions(-(-n_bits // k), min(link.bler, 1.0), gen)
    if failed.numel() == 0:
        return words, None
    if link.errors == "erasure":
        first, last = failed * k // bits, torch.clamp((failed + 1) * k - 1, max=n_bits - 1) // bits
        erased = torch.zeros(words.numel() + 1, dtype=torch.int32)
        erased.index_add_(0, first, torch.ones_like(first, dtype=torch.int32))
        erased.index_add_(0, last + 1, -torch.ones_like(last, dtype=torch.int32))
        return words, erased.cumsum(0)[:-1] > 0
    inside = min(1.0, link.ber / link.bler) if link.bler > 0 else 0.0
    local = _bernoulli_positions(failed.numel() * k, inside, gen)
    pos = failed[local // k] * k + local % k
    pos = pos[pos < n_bits]
    if pos.numel() == 0:
        return words, None
    masks = torch.zeros(words.numel(), dtype=torch.int32)
    masks.index_add_(0, pos // bits, (1 << (pos % bits)).to(torch.int32))  # distinct bits: the sum is the OR
    return words ^ masks, None


def _flip_bits(words: torch.Tensor, bits: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Every bit of the int32 words flipped independently with probability p (only the events drawn)."""
    if p <= 0.0:
        return words
    pos = _bernoulli_positions(words.numel() * bits, min(p, 1.0), gen)
    if pos.numel() == 0:
        return words
    masks = torch.zeros(words.numel(), dtype=torch.int32)
    masks.index_add_(0, pos // bits, (1 << (pos % bits)).to(torch.int32))  # distinct bits: the sum is the OR
    return words ^ masks


def _sinr_linear(sinr_db, mse: np.ndarray) -> np.ndarray:
    if sinr_db is None:
        with np.errstate(divide="ignore"):
            return np.where(mse > 0, 1.0 / np.where(mse > 0, mse, 1.0) - 1.0, np.inf).clip(0.0, None)
    try:
        arr = np.asarray(sinr_db.detach().cpu() if isinstance(sinr_db, torch.Tensor) else sinr_db, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("perturb.sinr_db", "must be a sequence of numbers in dB, one per user") from None
    if arr.shape != mse.shape:
        raise InputError("perturb.sinr_db", f"needs one value per user: shape {mse.shape}, got {arr.shape}")
    if np.any(np.isnan(arr)):
        raise InputError("perturb.sinr_db", "must be numbers of dB (-inf: a dead link, +inf: an error-free one)")
    return 10.0 ** (arr / 10.0)  # -inf dB -> 0: every axis errs with probability 2 Q(0) = 1 (edges 1/2)


# ----------------------------------------------------------------------------------- slice-wise entry points

@dataclass(frozen=True, eq=False)
class Stripes:
    """The row-periodic part of a Gaussian error (a jammer that replays its waveform every matrix row,
    `jamming.py`): `share[r, i]`, the fraction of row r's error variance on tensor i that repeats
    with the tensor's row (the rest is white); `rows[i]`, the rows of tensor i ([shape[0], rest];
    1 for vectors, which take no stripe); `signed`: a random sign per row."""
    share: torch.Tensor            # [R, n_tensors] float64 in [0, 1]
    rows: tuple[int, ...]
    signed: bool = False

    def pattern(self, n: int, r: int, tensor: int, gen: torch.Generator) -> Optional[torch.Tensor]:
        """Row r's striped unit-variance draw for tensor `tensor` (n entries), or None where it has none."""
        rows = self.rows[tensor]
        rho = float(self.share[r, tensor])
        if rows < 2 or rho <= 0.0:
            return None
        row = _standard_normal(n // rows, gen)[:n // rows]
        signs = (torch.randint(0, 2, (rows, 1), generator=gen, dtype=torch.int64) * 2 - 1).to(row.dtype) \
            if self.signed else torch.ones(rows, 1)
        return (signs * row).reshape(-1).mul_(rho ** 0.5)


def stripes_for(share, layout: ParamLayout, signed: bool) -> Stripes:
    """`Stripes` of a layout: each tensor read as [shape[0], rest]."""
    rows = tuple(int(s[0]) if len(s) >= 2 else 1 for s in layout.shapes)
    return Stripes(torch.as_tensor(np.asarray(share, dtype=np.float64)), rows, bool(signed))


@dataclass(frozen=True)
class Spec:
    """How a user's MSE becomes an error: the noise `model`, the `scale` it is relative to, the quantiser's
    `bits_per_param` (digital and coded links) and the transmitter's `gain_db`. `Spec.of(scenario.perturb)`
    reads the schema's section; checked here once."""
    model: str
    scale: str
    bits_per_param: int = 12
    gain_db: float = 0.0

    def __post_init__(self):
        _check_choice(self.model, MODELS, "perturb.model")
        _check_choice(self.scale, SCALES, "perturb.scale")
        if isinstance(self.bits_per_param, bool) or self.bits_per_param not in BITS_PER_PARAM:
            raise InputError("perturb.bits_per_param", f"must be one of {BITS_PER_PARAM}; got {self.bits_per_param!r}")

    @classmethod
    def of(cls, perturb_config) -> "Spec":
        p = perturb_config
        return cls(model=p.model, scale=p.scale, bits_per_param=p.bits_per_param, gain_db=p.symbol_gain_db)


@dataclass(frozen=True, eq=False)
class Link:
    """Everything :func:`perturb_slice_` needs for one drop of the uplink, built once by :func:`link`.

    ``users[r]``: the user (index into ``mse``) whose vector is row r of the slices; ``std``:
    [R, n_tensors] float32 per-tensor error std of those rows (Gaussian models)."""
    model: str
    seed: int
    users: tuple[int, ...]
    mse: np.ndarray          # every user's MSE
    std: Optional[torch.Tensor]
    factor: Optional[np.ndarray]
    sinr: Optional[np.ndarray]
    bits: int
    coded: Optional[tuple] = None   # coded: every user's CodedLink (decoded error rates, phy.coded_rates)
    stripes: Optional["Stripes"] = None  # gaussian: a row-periodic share of the error (jamming.py)

    @property
    def ber(self) -> Optional[np.ndarray]:
        """Every user's decoded bit-error rate on a coded link (None otherwise)."""
        return None if self.coded is None else np.array([c.ber for c in self.coded])

    @property
    def silent(self) -> bool:
        """No row receives any error (every fused user has an ideal link)."""
        return not any(self.mse[q] > 0 for q in self.users)


def link(
    mse,
    spec: Spec,
    *,
    layout: ParamLayout,
    seed: int,
    power: Optional[torch.Tensor] = None,
    users=None,
    error_covariance=None,
    sinr_db=None,
    coded=None,
    tensor_mse=None,
    stripes: Optional[Stripes] = None,
) -> Link:
    """Validate a drop's perturbation and precompute it for :func:`perturb_slice_`.

    ``mse`` has one entry per user (all users of the drop: the correlated model mixes them all);
    ``users`` lists the users whose vectors the slices will hold (default: all, in order);
    ``power`` is the [R, n_tensors] per-tensor reference square of those users' clean vectors (float64,
    :func:`reference_square` for ``spec.scale``), needed by every scale but ``absolute``; ``spec.gain_db``
    is the transmitter's amplitude gain (:func:`tensor_noise_std`; the digital link keeps its own quantiser).
    ``tensor_mse`` ([n_users, n_tensors], Gaussian models): each user's MSE while each tensor is sent,
    where a jammer varies its power over the transmission (`jamming.allocation_factors`); ``stripes``
    (the ``gaussian`` model): the row-periodic share of the error (`Stripes`).
    """
    if not isinstance(layout, ParamLayout):
        raise InputError("perturb.layout", f"must be a ParamLayout; got {type(layout).__name__}")
    try:
        n_given = len(mse)
    except TypeError:
        n_given = 1  # a bare number: _check_mse says it needs one value per user
    mse = _check_mse(mse, max(n_given, 1))
    n_users = len(mse)
    users = tuple(range(n_users)) if users is None else tuple(int(q) for q in users)
    if not users or any(not 0 <= q < n_users for q in users):
        raise InputError("perturb.users", f"must be user indices in [0, {n_users}); got {users!r}")
    if not isinstance(spec, Spec):
        raise InputError("perturb", f"spec must be a perturb.Spec; got {type(spec).__name__}")
    model, scale, gain_db = spec.model, spec.scale, spec.gain_db
    seed = check_seed(seed)
    std = factor = sinr = None
    bits = 0
    if model in ("digital", "coded"):
        bits = int(spec.bits_per_param)
        sinr = _sinr_linear(sinr_db, mse)
        if model == "coded":
            coded = tuple(coded) if coded is not None else ()
            for c in coded:
                if isinstance(c, CodedLink):
                    _check_choice(c.errors, CODED_ERRORS, "perturb.coded_errors")
            if len(coded) != n_users or not all(isinstance(c, CodedLink) for c in coded):
                raise InputError("perturb.coded", f"the coded link needs one CodedLink per user ({n_users}), "
                                 "from phy.coded_rates at each user's SINR")
        else:
            coded = None
    else:
        coded = None
        if model == "correlated":
            if error_covariance is None:
                raise InputError("perturb.error_covariance", "the correlated model needs the receiver's error covariance")
            factor = correlation_factor(error_covariance, n_users)
        if tensor_mse is None:
            std = tensor_noise_std(power, mse[list(users)], layout, scale, gain_db)
        else:
            std = tensor_std(power, np.asarray(tensor_mse, dtype=np.float64)[list(users)], layout, scale, gain_db)
    if stripes is not None and (model != "gaussian" or tuple(stripes.share.shape) != (len(users), len(layout.names))):
        raise InputError("jammer.structure", "a row-periodic jammer needs the gaussian link and one share per "
                         f"(fused user, tensor): [{len(users)}, {len(layout.names)}]")
    return Link(model=model, seed=seed, users=users, mse=mse, std=std, factor=factor, sinr=sinr, bits=bits, coded=coded,
                stripes=stripes)


def perturb_slice_(x: torch.Tensor, lk: Link, tensor: int) -> torch.Tensor:
    """Add the channel's error to tensor `tensor` of every row of ``x`` ([R, n_i] float32, rows as
    ``lk.users``; any strided view), in place; returns ``x``. Rows of users with MSE 0 are untouched."""
    if x.shape[0] != len(lk.users):
        raise InputError("perturb.slice", f"has {x.shape[0]} rows for {len(lk.users)} users")
    n = x.shape[1]
    if n == 0 or lk.silent:
        return x
    if lk.model in ("digital", "coded"):
        for r, q in enumerate(lk.users):
            if lk.mse[q] > 0:
                _digital_slice_(x[r], lk.bits, float(lk.sinr[q]), _generator(stream_seed(lk.seed, q, tensor)),
                                coded=None if lk.coded is None else lk.coded[q])
        return x
    if lk.factor is None:
        for r, q in enumerate(lk.users):
            if lk.mse[q] > 0:
                z = _standard_normal(n, _generator(stream_seed(lk.seed, q, tensor)))[:n]
                stripe = None if lk.stripes is None else lk.stripes.pattern(
                    n, r, tensor, _generator(stream_seed(lk.seed, q, tensor, 1)))
                if stripe is not None:  # the white rest and the replayed share: the same variance in all
                    z.mul_((1.0 - float(lk.stripes.share[r, tensor])) ** 0.5).add_(stripe)
                x[r].add_(z.mul_(lk.std[r, tensor]))
        return x
    # correlated: every user's draw for this tensor, mixed by L, only the rows asked for kept
    z = torch.stack([_standard_normal(n, _generator(stream_seed(lk.seed, q, tensor)))
                     for q in range(len(lk.mse))])
    noise = _correlated_noise(z, lk.factor, list(lk.users))
    del z
    for r, q in enumerate(lk.users):
        if lk.mse[q] > 0:
            x[r].add_(noise[r, :n].mul_(lk.std[r, tensor]))
    return x


def perturb(
    clean: torch.Tensor,
    mse,
    *,
    layout: ParamLayout,
    model: str,
    scale: str,
    seed: int,
    error_covariance=None,
    sinr_db=None,
    bits_per_param: int = 12,
    gain_db: float = 0.0,
) -> torch.Tensor:
    """Received task vectors [T, P] (float32, new tensor) from the clean ones and per-user MSEs.

    ``error_covariance`` (Q x Q, complex allowed) is required by ``correlated``; ``sinr_db``
    (per user, dB) and ``bits_per_param`` are used by ``digital``. See the module docstring. The
    whole-stack form of :func:`link` + :func:`perturb_slice_` (the same numbers, slice for slice).
    """
    clean = check_stack(clean, layout, "perturb.clean")
    mse = _check_mse(mse, clean.shape[0])
    needs_power = model in ("gaussian", "correlated") and scale != "absolute"
    power = reference_squares(clean, layout, scale) if needs_power else None
    lk = link(mse, Spec(model, scale, bits_per_param, gain_db), layout=layout, seed=seed, power=power,
              error_covariance=error_covariance, sinr_db=sinr_db)
    out = clean.clone()
    if lk.silent:
        return out
    for i, (a, b) in enumerate(zip(layout.offsets, layout.offsets[1:])):
        perturb_slice_(out[:, a:b], lk, i)
    return out
