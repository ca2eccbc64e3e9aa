"""Hostile input to WirelessConfig.parse: only InputError escapes, and what is accepted computes."""
import math
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmtllmf_core.errors import InputError
from rmtllmf_core.science.wireless import WirelessConfig, evaluate_uplink

FIELDS = list(WirelessConfig.model_fields) + ["tx_power_dbm", "jammer_power_dbm", "noise_power_dbm", "bogus"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**3, 10**3), st.sampled_from([10**400, -10**400, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e3, 1e3), st.floats(1e-60, 1e-3),
    st.text(max_size=5), st.sampled_from(["none", "white", "worst_sum_rate", "targeted", "worst_max_user_numeric", "uma_nlos"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.lists(st.lists(st.floats(-2, 2), min_size=1, max_size=3), min_size=1, max_size=3),
                   st.fixed_dictionaries({"re": st.lists(st.lists(scalars, max_size=3), max_size=3)}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.dictionaries(st.sampled_from(FIELDS), values, max_size=4))
def test_only_input_error_escapes_and_accepted_values_compute(data):
    try:
        cfg = WirelessConfig.parse(data)
    except InputError as exc:
        assert exc.field.startswith("wireless") and exc.reason and len(str(exc)) < 500
        return
    assert WirelessConfig.parse(cfg.to_dict()) == cfg  # canonical fixed point
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow / invalid value inside
        res = evaluate_uplink(cfg, iterations=3)
    assert np.all(np.isfinite(res.mse)) and np.all((res.mse >= 0) & (res.mse <= 1))
    assert math.isfinite(res.sum_rate_nats)
