"""Physical-layer protection beside R-MTLLMF: what each protection costs in airtime and what it does
to a user's link.

- **Repetition** (`perturb.repetition` = r): every symbol is sent r times and the copies are combined
  at the receiver (maximum-ratio), so the post-combining SINR is r times the single copy's and the
  receiver's MSE, the MMSE 1 / (1 + SINR), becomes 1 / (1 + r SINR) (not MSE / r, which would beat
  that bound: 8x at 0 dB with r = 8); r times the airtime.
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
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

CODE_RATES = ("1/3", "1/2", "2/3", "3/4", "5/6")
QAM_BITS = (2, 4, 6, 8)
CODEWORD_BITS = 1920          # a multiple of every QAM_BITS, and of 3 and 6 for the rates' k
SINR_GRID_DB = tuple(float(v) for v in range(-6, 31))
# a point runs until it has MIN_ERRORS bit errors *and* MIN_BLOCK_ERRORS failed codewords (a failed
# codeword holds tens of bit errors: 100 bit errors alone can be two blocks), or MAX_CODEWORDS
MIN_ERRORS, MIN_BLOCK_ERRORS, MAX_CODEWORDS, FIRST_BATCH, BATCH = 100, 20, 2000, 50, 390
CONFIDENCE = 0.95             # the resolution bound of an error-free point: 1 - (1 - CONFIDENCE)^(1/N)
TABLE_VERSION = "ldpc5g-bp20-v3"
_tables: dict[str, dict] = {}
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
    """Each user's (MSE, SINR in dB) after maximum-ratio combining of `repetition` copies with
    independent noise: SINR x r, and the MMSE at that SINR, 1 / (1 + r SINR), with the single copy's
    SINR read from its MSE (MSE = 1 / (1 + SINR), `wireless.receiver`), written so that MSE 0 stays
    0 and MSE 1 (a dead link) stays 1. r = 1 returns the MSE as it is."""
    r = int(repetition)
    if r < 1:
        raise InputError("perturb.repetition", f"a whole number of copies >= 1; got {repetition!r}")
    mse = np.asarray(mse, dtype=np.float64)
    sinr_db = np.asarray(sinr_db, dtype=np.float64)
    if r == 1:
        return mse, sinr_db
    # 1 / (1 + r (1/m - 1)) = m / (r - (r - 1) m); an MSE above 1 (a blind receiver's) counts as 1
    m = np.clip(mse, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return m / (r - (r - 1) * m), sinr_db + 10.0 * np.log10(r)


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
    ber, bler, bits_sent, blocks_sent, error_free_from = [], [], [], [], None
    with torch.no_grad():
        for snr_db in SINR_GRID_DB:   # read at call time: a test may use a coarser grid
            if error_free_from is not None:    # past the waterfall: nothing more to resolve (monotone in SINR)
                ber.append(0.0)
                bler.append(0.0)
                bits_sent.append(0)
                blocks_sent.append(0)
                continue
            no = 10.0 ** (-snr_db / 10.0)      # unit-energy symbols: N0 = 1 / SINR
            errors = block_errors = sent = codewords = 0
            while (errors < MIN_ERRORS or block_errors < MIN_BLOCK_ERRORS) and codewords < MAX_CODEWORDS:
                # a small first batch: below the waterfall it already holds thousands of errors
                batch = FIRST_BATCH if codewords == 0 else BATCH
                b = source([batch, k])
                wrong = b != dec(demapper(awgn(mapper(enc(b)), no), no))
                errors += int(wrong.sum())
                block_errors += int(wrong.any(dim=1).sum())
                sent += b.numel()
                codewords += batch
            ber.append(errors / sent)
            bler.append(block_errors / codewords)
            bits_sent.append(sent)
            blocks_sent.append(codewords)
            if errors == 0:
                error_free_from = snr_db
    return {"sinr_db": list(SINR_GRID_DB), "ber": ber, "bler": bler, "bits": bits_sent, "codewords": blocks_sent,
            "k": k, "n": n, "code_rate": str(code_rate), "qam_bits": qam_bits, "version": TABLE_VERSION}


SHIPPED_TABLES = Path(__file__).with_name("ldpc_tables.json")  # `python -m rmtllmf_core ldpc-tables` writes it


def table_key(code_rate: str, qam_bits: int) -> str:
    """A table's key: the code setting and everything the simulation depends on (a change to any of
    them, or to the simulator's version, makes a shipped or cached table stale)."""
    rate, q = check_code(code_rate, qam_bits)
    return "phy/ber/" + hashlib.sha256(json.dumps([TABLE_VERSION, str(rate), q, CODEWORD_BITS, list(SINR_GRID_DB),
                                                   MIN_ERRORS, MIN_BLOCK_ERRORS, MAX_CODEWORDS]).encode()).hexdigest()


def _shipped(key: str) -> dict | None:
    try:
        tables = json.loads(SHIPPED_TABLES.read_text()).get("tables", {})
    except (OSError, ValueError):
        return None
    table = tables.get(key)
    return table if isinstance(table, dict) and table.get("version") == TABLE_VERSION else None


def ber_table(code_rate: str = "1/2", qam_bits: int = 4, cache=None, *, build: bool = True,
              shipped: bool = True) -> dict | None:
    """The coded BER and BLER versus SINR of one code setting: from memory, the tables shipped with
    the package (`ldpc_tables.json`, made by the same simulation), the disk cache, or simulated once
    (keyed by `table_key`; `cache`: a ResultCache, or None to keep a new table in memory only).
    `build=False`: None when not made yet; `shipped=False` skips the file."""
    key = table_key(code_rate, qam_bits)
    rate, q = check_code(code_rate, qam_bits)
    with _lock:
        if key in _tables:
            return _tables[key]
        stored: Any = _shipped(key) if shipped else None
        if stored is None and cache is not None:
            stored = cache.get(key)
        if not (isinstance(stored, dict) and stored.get("version") == TABLE_VERSION):
            if not build:
                return None
            stored = _simulate(rate, q)
            if cache is not None:
                cache.set(key, stored)
        _tables[key] = stored
        return stored


def write_tables(settings, path: Path = SHIPPED_TABLES, say=lambda line: None) -> dict:
    """Simulate every (code_rate, qam_bits) of `settings` afresh and write them to `path` with where
    they came from (the file `ber_table` reads first)."""
    import time

    import sionna

    tables = {}
    for code_rate, qam_bits in settings:
        t = time.perf_counter()
        rate, q = check_code(code_rate, qam_bits)
        tables[table_key(code_rate, qam_bits)] = _simulate(rate, q)
        say(f"LDPC {code_rate} on {2 ** q}-QAM: {time.perf_counter() - t:.1f} s")
    doc = {"made_by": "python -m rmtllmf_core ldpc-tables", "sionna": sionna.__version__,
           "date": time.strftime("%Y-%m-%d"), "tables": tables}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def upper_bound(trials) -> np.ndarray:
    """The one-sided CONFIDENCE upper bound of a rate that showed no event in `trials` trials
    (Clopper-Pearson; about 3 / trials at 95%): all that an error-free simulation point says."""
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.where(n > 0, -np.expm1(np.log1p(-CONFIDENCE) / np.where(n > 0, n, 1.0)), 1.0)
    return float(out) if out.ndim == 0 else out


def resolved_curve(table: dict, which: str = "ber") -> np.ndarray:
    """The table's `which` ("ber" or "bler") on its grid, as far as the simulation resolved it: a
    point with errors keeps its estimate; the first error-free point takes its upper bound, and every
    point past it (not simulated) that same bound, since the rate falls with SINR; kept monotone
    (a running minimum: the rate at a higher SINR is at most the one at a lower SINR)."""
    rate = np.asarray(table[which], dtype=np.float64)
    trials = np.asarray(table["bits" if which == "ber" else "codewords"], dtype=np.float64)
    out = rate.copy()
    zero = rate <= 0
    if zero.any():
        first = int(np.argmax(zero))
        out[first:] = upper_bound(trials[first])
    return np.minimum.accumulate(out)


def coded_rates(sinr_db, code_rate: str = "1/2", qam_bits: int = 4, cache=None) -> tuple[np.ndarray, np.ndarray]:
    """Each user's (bit, block) error rates after decoding at its SINR (dB): the resolved curves
    (`resolved_curve`) interpolated in log between grid points, the end values beyond the grid; a
    NaN SINR (no link) decodes nothing (BER 1/2, BLER 1)."""
    table = ber_table(code_rate, qam_bits, cache)
    grid = np.asarray(table["sinr_db"])
    x = np.clip(np.asarray(sinr_db, dtype=np.float64), grid[0], grid[-1])
    nan = np.isnan(np.asarray(sinr_db, dtype=np.float64))
    ber, bler = (10.0 ** np.interp(x, grid, np.log10(np.maximum(resolved_curve(table, w), 1e-300))) for w in ("ber", "bler"))
    return np.where(nan, 0.5, ber), np.where(nan, 1.0, np.maximum(bler, ber))  # a failed bit fails its block


def block_bits(code_rate: str) -> int:
    """Information bits per codeword at `code_rate` (the unit a decoding failure takes down)."""
    return int(CODEWORD_BITS * check_code(code_rate, QAM_BITS[0])[0])


def coded_ber(sinr_db, code_rate: str = "1/2", qam_bits: int = 4, cache=None) -> np.ndarray:
    """Each user's bit-error rate after decoding at its SINR (dB) (`coded_rates`)."""
    return coded_rates(sinr_db, code_rate, qam_bits, cache)[0]
