"""Physical-layer protection beside R-MTLLMF: what each protection costs in airtime and what it does
to a user's link.

- **Repetition** (`perturb.repetition` = r): every symbol is sent r times and the copies are combined
  at the receiver (maximum-ratio), so the post-combining SINR is r times the single copy's and the
  Gaussian models' error variance (the MSE) is divided by r; r times the airtime.
- **A coded digital link** (`perturb.model = "coded"`): parameters quantised to `bits_per_param` bits
  (as the uncoded `digital` link), protected by a 5G NR LDPC code of rate `code_rate` on
  Gray-mapped QAM with `qam_bits` bits per symbol, through Sionna's `LDPC5GEncoder`, `Mapper`,
  `AWGN`, `Demapper` (APP) and `LDPC5GDecoder` (20 BP iterations). Decoding millions of parameters
  per run is not needed: the coded bit-error rate versus SINR is simulated once per code setting
  (`ber_table`, on a 1 dB grid, until 100 bit errors or 2,000 codewords of 1,920 coded bits per
  point), stored in the disk cache, and each user's bits are then flipped independently at the
  rate its SINR gives (interpolated in log BER). A point with no error in its 2,000 codewords
  (under 1 in 10^6 bits wrong) is taken as error-free.
- **Airtime** (`airtime_factor`): channel uses per parameter against the uncoded analogue link's
  one symbol per parameter: r for the Gaussian models, r x bits / 6 for `digital` (64-QAM),
  r x bits / (qam_bits x rate) for `coded`.
"""
from __future__ import annotations

import hashlib
import json
import threading
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import InputError

CODE_RATES = ("1/3", "1/2", "2/3", "3/4", "5/6")
QAM_BITS = (2, 4, 6, 8)
CODEWORD_BITS = 1920          # a multiple of every QAM_BITS, and of 3 and 6 for the rates' k
SINR_GRID_DB = tuple(float(v) for v in range(-6, 31))
MIN_ERRORS, MAX_CODEWORDS, FIRST_BATCH, BATCH = 100, 2000, 50, 390
TABLE_VERSION = "ldpc5g-bp20-v2"
_tables: dict[str, dict] = {}
_cache = None


def _engine_cache():
    """The engine's cache folder, opened here (runtime.default_cache would be an import cycle: runtime
    imports fusion, which imports perturb, which imports this module)."""
    global _cache
    if _cache is None:
        from .cache import ResultCache

        _cache = ResultCache()
    return _cache
_lock = threading.Lock()


def check_code(code_rate: str, qam_bits: int) -> tuple[Fraction, int]:
    if code_rate not in CODE_RATES:
        raise InputError("perturb.code_rate", f"one of {', '.join(CODE_RATES)}; got {code_rate!r}")
    if isinstance(qam_bits, bool) or qam_bits not in QAM_BITS:
        raise InputError("perturb.qam_bits", f"one of {', '.join(map(str, QAM_BITS))} bits per QAM symbol; got {qam_bits!r}")
    return Fraction(code_rate), int(qam_bits)


def airtime_factor(model: str, repetition: int = 1, bits_per_param: int = 12, code_rate: str = "1/2",
                   qam_bits: int = 4) -> float:
    """Channel uses per parameter, against the analogue link's one symbol per parameter."""
    if isinstance(repetition, bool) or not isinstance(repetition, (int, np.integer)) or repetition < 1:
        raise InputError("perturb.repetition", f"a whole number of copies >= 1; got {repetition!r}")
    if model == "digital":
        return repetition * bits_per_param / 6
    if model == "coded":
        rate, q = check_code(code_rate, qam_bits)
        return float(repetition * bits_per_param / (q * rate))
    return float(repetition)


def repeated(mse, sinr_db, repetition: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's (MSE, SINR in dB) after combining `repetition` copies: SINR x r, MSE / r."""
    r = int(repetition)
    if r < 1:
        raise InputError("perturb.repetition", f"a whole number of copies >= 1; got {repetition!r}")
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return mse / r, np.asarray(sinr_db, dtype=np.float64) + 10.0 * np.log10(r)


def _simulate(code_rate: Fraction, qam_bits: int, seed: int = 0) -> dict:
    import torch
    from sionna.phy import config
    from sionna.phy.channel import AWGN
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import BinarySource, Demapper, Mapper

    config.seed = seed
    torch.manual_seed(seed)
    n = CODEWORD_BITS
    k = int(n * code_rate)
    enc = LDPC5GEncoder(k, n, num_bits_per_symbol=qam_bits)
    dec = LDPC5GDecoder(enc, num_iter=20, hard_out=True)
    mapper, demapper = Mapper("qam", qam_bits), Demapper("app", "qam", qam_bits)
    awgn, source = AWGN(), BinarySource()
    ber, bits_sent, error_free_from = [], [], None
    with torch.no_grad():
        for snr_db in SINR_GRID_DB:   # read at call time: a test may use a coarser grid
            if error_free_from is not None:    # past the waterfall: 0 from here on (monotone in SINR)
                ber.append(0.0)
                bits_sent.append(0)
                continue
            no = 10.0 ** (-snr_db / 10.0)      # unit-energy symbols: N0 = 1 / SINR
            errors = sent = codewords = 0
            while errors < MIN_ERRORS and codewords < MAX_CODEWORDS:
                # a small first batch: below the waterfall it already holds thousands of errors
                batch = FIRST_BATCH if codewords == 0 else BATCH
                b = source([batch, k])
                b_hat = dec(demapper(awgn(mapper(enc(b)), no), no))
                errors += int((b != b_hat).sum())
                sent += b.numel()
                codewords += batch
            ber.append(errors / sent)
            bits_sent.append(sent)
            if errors == 0:
                error_free_from = snr_db
    return {"sinr_db": list(SINR_GRID_DB), "ber": ber, "bits": bits_sent, "k": k, "n": n,
            "code_rate": str(code_rate), "qam_bits": qam_bits, "version": TABLE_VERSION}


def ber_table(code_rate: str = "1/2", qam_bits: int = 4, cache=None, *, build: bool = True) -> dict | None:
    """The coded BER versus SINR of one code setting: simulated once, then from memory or the disk
    cache (keyed by the setting and the simulator's version). `build=False`: None when not made yet."""
    rate, q = check_code(code_rate, qam_bits)
    key = "phy/ber/" + hashlib.sha256(json.dumps([TABLE_VERSION, str(rate), q, CODEWORD_BITS, list(SINR_GRID_DB),
                                                  MIN_ERRORS, MAX_CODEWORDS]).encode()).hexdigest()
    with _lock:
        if key in _tables:
            return _tables[key]
        if cache is None:
            cache = _engine_cache()
        stored: Any = cache.get(key)
        if not (isinstance(stored, dict) and stored.get("version") == TABLE_VERSION):
            if not build:
                return None
            stored = _simulate(rate, q)
            cache.set(key, stored)
        _tables[key] = stored
        return stored


def coded_ber(sinr_db, code_rate: str = "1/2", qam_bits: int = 4, cache=None) -> np.ndarray:
    """Each user's bit-error rate after decoding at its SINR (dB): log-BER interpolated on the table;
    0 past the table's first error-free point, the first point's BER below the grid."""
    table = ber_table(code_rate, qam_bits, cache)
    grid = np.asarray(table["sinr_db"])
    ber = np.asarray(table["ber"], dtype=np.float64)
    x = np.clip(np.asarray(sinr_db, dtype=np.float64), grid[0], grid[-1])
    zero = ber <= 0
    logs = np.log10(np.where(zero, 1e-300, ber))
    out = 10.0 ** np.interp(x, grid, logs)
    if zero.any():
        out = np.where(x >= grid[np.argmax(zero)], 0.0, out)
    return np.where(np.isnan(np.asarray(sinr_db, dtype=np.float64)), 0.5, out)
