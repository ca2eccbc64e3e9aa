"""The unusable-channel warning: said for a channel that leaves the task vectors as noise with no
jammer, with the SINRs and the knobs; silent for the calibrated default and for a jammer's work."""
import pytest

from rmtllmf_core.science.wireless import (PRESETS, WirelessConfig, channel_warning, evaluate_uplink,
    unusable_uplink_warning)
from rmtllmf_core.science.wireless.checks import UNUSABLE_AVERAGE_MSE

# the schema's old default uplink: k T B NF of 1 MHz and 7 dB (-107 dBm) against ~-140 dBm received
OLD_DEFAULT = {"bandwidth_hz": 1e6, "noise_figure_db": 7.0}


def test_the_default_and_the_paper_presets_are_usable():
    assert channel_warning(WirelessConfig.parse({})) is None
    for name, data in PRESETS.items():
        assert channel_warning(WirelessConfig.parse(data)) is None, name


def test_a_noise_dominated_channel_says_so_with_figures_and_knobs():
    cfg = WirelessConfig.parse(OLD_DEFAULT)
    up = evaluate_uplink(cfg)
    assert up.average_mse > UNUSABLE_AVERAGE_MSE
    msg = channel_warning(cfg, up)
    assert msg.startswith("Unusable channel: average MSE ")
    assert f"{up.average_mse:.3f}" in msg
    assert "SINR per user: " + ", ".join(f"{s:.1f}" for s in up.sinr_db) + " dB" in msg
    assert "transmit power -10.0 dBm per user" in msg and "thermal noise -107.0 dBm per antenna" in msg
    assert "k T B NF of 1 MHz and 7 dB" in msg and "calibrated default is -154.3 dBm" in msg
    assert "users at " in msg and "bring the users closer" in msg
    # the same from the evaluation's JSON form, and without the uplink at hand
    assert unusable_uplink_warning(up.to_dict(), noise_note="k T B NF of 1 MHz and 7 dB, noise_power_w unset") == msg
    assert channel_warning(cfg) == msg


def test_a_jammer_is_not_blamed_on_the_channel():
    jammed = WirelessConfig.parse({"attack": "white", "jammer_power_dbm": -100})
    up = evaluate_uplink(jammed)
    assert up.average_mse > UNUSABLE_AVERAGE_MSE
    assert unusable_uplink_warning(up) is None and channel_warning(jammed, up) is None
    # a channel that is unusable on its own still says so under an attack
    weak = WirelessConfig.parse({"num_users": 2, "tx_power_dbm": -40, "attack": "worst_sum_rate"})
    assert "even without the jammer" in channel_warning(weak)


def test_explicit_channels_and_many_users():
    weak = WirelessConfig.parse({"channel": {"re": [[1e-9, 2e-9], [2e-9, 1e-9]]}})
    msg = channel_warning(weak)
    assert "the explicit channel's gains" in msg and "strengthen the channel" in msg
    many = channel_warning(WirelessConfig.parse({**OLD_DEFAULT, "num_users": 20}))
    assert "dB over 20 users" in many


def test_a_user_without_power_is_reported_not_crashed():
    cfg = WirelessConfig.parse({**OLD_DEFAULT, "tx_power_w": [0.0, 1e-4]})
    msg = channel_warning(cfg, evaluate_uplink(cfg).to_dict())  # SINR -inf dB is null in JSON
    assert "-inf" in msg and "transmit power -inf to -10.0 dBm" in msg


@pytest.mark.parametrize("mse, said", [(0.49, False), (0.51, True)])
def test_the_threshold_is_on_the_average_mse(mse, said):
    uplink = {"attack": "none", "jammer_trace_w": 0.0, "thermal_noise_w": 1e-18,
              "users": [{"mse": mse, "sinr_db": 0.0, "tx_power_w": 1e-4}] * 2}
    assert (unusable_uplink_warning(uplink) is not None) is said
