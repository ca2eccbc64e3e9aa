"""WirelessConfig: canonical form, implied sizes, presets, geometry, and every bad input."""
import math

import numpy as np
import pytest

from rmtllmf_core.errors import InputError
from rmtllmf_core.units import thermal_noise_w
from rmtllmf_core.science.wireless import PRESETS, WirelessConfig, draw_channels, evaluate_uplink, preset
from rmtllmf_core.science.wireless.config import DEFAULT_NOISE_POWER_W
from rmtllmf_core.science.wireless.geometry import pathloss_db

CHANNEL = {"re": [[1.0, 0.5], [0.2, 1.0], [0.0, 0.3]], "im": [[0.0, 0.1], [0.3, 0.0], [0.2, 0.0]]}


def test_dbm_aliases_give_one_canonical_form():
    a = WirelessConfig.parse({"tx_power_dbm": -10, "jammer_power_dbm": -130, "noise_power_dbm": -154})
    b = WirelessConfig.parse({"tx_power_w": 1e-4, "jammer_power_w": 1e-16, "noise_power_w": 10 ** (-18.4)})
    assert a.tx_power_w == pytest.approx(1e-4) and a.jammer_power_w == pytest.approx(1e-16)
    assert a.noise_power_w == pytest.approx(b.noise_power_w)
    assert WirelessConfig.parse(a.to_dict()) == a
    assert "tx_power_dbm" not in a.to_dict()
    per_user = WirelessConfig.parse({"tx_power_dbm": [0, 10, 20]})
    assert per_user.num_users == 3 and per_user.tx_power_w == pytest.approx([1e-3, 1e-2, 1e-1])


def test_sizes_are_implied_by_channel_distances_or_power_list():
    cfg = WirelessConfig.parse({"channel": CHANNEL})
    assert (cfg.num_users, cfg.num_rx_antennas) == (2, 3)
    assert WirelessConfig.parse(cfg.to_dict()) == cfg
    real = WirelessConfig.parse({"channel": {"re": CHANNEL["re"]}})
    assert real.channel.im is None and WirelessConfig.parse(real.to_dict()) == real
    assert WirelessConfig.parse({"distances_m": [100, 200, 300]}).num_users == 3
    assert WirelessConfig.parse({"tx_power_w": [1e-4] * 5}).num_users == 5
    assert WirelessConfig.parse({}).num_users == 8


def test_schema_defaults_are_the_calibrated_paper_uplink():
    # one default uplink: what a scenario leaves out is the paper preset's
    default = WirelessConfig.parse({})
    assert default == preset("paper") and WirelessConfig.parse(PRESETS["paper"]) == default
    assert 10 * math.log10(default.thermal_noise_power_w() * 16 * 1e3) == pytest.approx(-142.3)
    assert 10 * math.log10(default.jammer_power_w * 1e3) == pytest.approx(-129.25)
    assert (default.seed, default.fading_seed, default.attack) == (281, 281, "none")
    assert evaluate_uplink(default).average_mse == pytest.approx(0.0132, abs=1e-4)  # the app's default


def test_thermal_noise_default_and_override():
    # default: the calibrated power, not k T B NF of the (display) bandwidth and noise figure
    assert WirelessConfig.parse({}).thermal_noise_power_w() == DEFAULT_NOISE_POWER_W
    # a bandwidth or noise figure given without a noise power asks for k T B NF
    cfg = WirelessConfig.parse({"bandwidth_hz": 1e6, "noise_figure_db": 7})
    assert cfg.noise_power_w is None and WirelessConfig.parse(cfg.to_dict()) == cfg
    assert cfg.thermal_noise_power_w() == pytest.approx(thermal_noise_w(1e6, 7))
    assert 10 * math.log10(cfg.thermal_noise_power_w() * 1e3) == pytest.approx(-174 + 60 + 7, abs=0.05)
    assert WirelessConfig.parse({"noise_figure_db": 9}).thermal_noise_power_w() == pytest.approx(thermal_noise_w(1e6, 9))
    assert WirelessConfig.parse({"noise_power_w": None}).thermal_noise_power_w() == pytest.approx(thermal_noise_w(1e6, 7))
    # a given noise power wins, in W or dBm
    assert WirelessConfig.parse({"noise_power_w": 1e-12}).thermal_noise_power_w() == 1e-12
    assert WirelessConfig.parse({"noise_power_w": 1e-12, "bandwidth_hz": 2e7}).thermal_noise_power_w() == 1e-12
    assert WirelessConfig.parse({"noise_power_dbm": -90, "bandwidth_hz": 2e7}).thermal_noise_power_w() == pytest.approx(1e-12)


def test_presets_are_plain_data_and_valid():
    for name, data in PRESETS.items():
        assert isinstance(data, dict)
        cfg = WirelessConfig.parse(data)
        assert WirelessConfig.parse(cfg.to_dict()) == cfg
    paper = preset("paper")
    assert (paper.num_users, paper.num_rx_antennas, paper.tx_power_w) == (8, 16, 1e-4)
    assert (paper.d_min_m, paper.d_max_m) == (100.0, 1000.0)
    with pytest.raises(InputError) as err:
        preset("nope")
    assert err.value.field == "wireless.preset"


def test_pathloss_models():
    d = np.array([100.0, 300.0, 1000.0])
    fs = pathloss_db("free_space", d, 3.5e9)
    assert fs[2] == pytest.approx(20 * np.log10(4 * np.pi * 1000 * 3.5e9 / 299792458.0))
    uma = pathloss_db("uma_nlos", d, 3.5e9)
    d3 = np.sqrt(1000.0**2 + 23.5**2)
    assert uma[2] == pytest.approx(13.54 + 39.08 * np.log10(d3) + 20 * np.log10(3.5))
    umi = pathloss_db("umi_nlos", d, 3.5e9)
    assert umi[2] == pytest.approx(22.4 + 35.3 * np.log10(np.sqrt(1000.0**2 + 8.5**2)) + 21.3 * np.log10(3.5))
    ld = pathloss_db("log_distance", d, 3.5e9, exponent=3.0)
    assert ld[1] - ld[0] == pytest.approx(30 * np.log10(3))
    for model in ["uma_nlos", "umi_nlos", "free_space", "log_distance"]:
        assert np.all(np.diff(pathloss_db(model, np.linspace(10, 5000, 50), 3.5e9)) > 0)
        assert np.all(pathloss_db(model, d, 3.5e9) >= fs - 1e-9)  # never better than free space


def test_geometry_draws_are_seeded_and_inside_the_annulus():
    cfg = WirelessConfig.parse({"num_users": 50, "d_min_m": 100, "d_max_m": 1000, "shadowing_std_db": 6})
    a, b = draw_channels(cfg), draw_channels(cfg)
    np.testing.assert_array_equal(a.channel, b.channel)
    assert np.all((a.distances_m >= 100) & (a.distances_m <= 1000))
    other = draw_channels(WirelessConfig.parse({**cfg.to_dict(), "fading_seed": 1}))
    np.testing.assert_array_equal(other.distances_m, a.distances_m)  # fading seed moves no user
    assert not np.allclose(other.channel, a.channel)
    res = evaluate_uplink(WirelessConfig.parse({"distances_m": [100, 200], "angles_deg": [0, 90]}))
    np.testing.assert_allclose([res.x_m[0], res.y_m[1]], [100, 200], atol=1e-9)
    assert res.x_m[1] == pytest.approx(0, abs=1e-9)
    assert evaluate_uplink(WirelessConfig.parse({"channel": CHANNEL})).x_m is None


BAD = [
    ({"tx_power_w": -1e-4}, "wireless.tx_power_w"),
    ({"tx_power_w": float("nan")}, "wireless.tx_power_w"),
    ({"tx_power_w": [1e-4, -1.0]}, "wireless.tx_power_w"),
    ({"tx_power_w": [1e-4, 1e-4], "num_users": 3}, "wireless.tx_power_w"),
    ({"tx_power_dbm": float("inf")}, "wireless.tx_power_dbm"),
    ({"tx_power_dbm": -10, "tx_power_w": 1e-4}, "wireless.tx_power_dbm"),
    ({"jammer_power_w": -1.0}, "wireless.jammer_power_w"),
    ({"jammer_power_w": float("nan")}, "wireless.jammer_power_w"),
    ({"jammer_power_dbm": "loud"}, "wireless.jammer_power_dbm"),
    ({"noise_power_w": 0.0}, "wireless.noise_power_w"),
    ({"noise_power_w": -1e-12}, "wireless.noise_power_w"),
    ({"channel": {"re": [[1.0, 2.0], [3.0]]}}, "wireless.channel.re"),
    ({"channel": {"re": [[1.0, 2.0]], "im": [[1.0], [2.0]]}}, "wireless.channel.im"),
    ({"tx_power_w": "high"}, "wireless.tx_power_w"),
    ({"tx_power_w": []}, "wireless.tx_power_w"),
    ({"channel": {"re": [[1.0, float("nan")]]}}, "wireless.channel.re.0.1"),
    ({"channel": {"re": [[1.0, float("inf")]]}}, "wireless.channel.re.0.1"),
    ({"channel": {"re": [[1.0, 2.0]], "im": [[0.0, float("nan")]]}}, "wireless.channel.im.0.1"),
    ({"channel": {"re": []}}, "wireless.channel.re"),
    ({"channel": {"re": [[1.0] * 65]}}, "wireless.channel.re"),
    ({"channel": {"re": [[1.0]] * 257}}, "wireless.channel.re"),
    ({"channel": CHANNEL, "num_users": 3}, "wireless.num_users"),
    ({"channel": CHANNEL, "num_rx_antennas": 4}, "wireless.num_rx_antennas"),
    ({"channel": CHANNEL, "distances_m": [100, 200]}, "wireless.distances_m"),
    ({"attack": "nuke"}, "wireless.attack"),
    ({"attack": "targeted"}, "wireless.target_user"),
    ({"attack": "targeted", "target_user": 8}, "wireless.target_user"),
    ({"attack": "targeted", "target_user": -1}, "wireless.target_user"),
    ({"channel": CHANNEL, "attack": "targeted", "target_user": 2}, "wireless.target_user"),
    ({"num_users": 0}, "wireless.num_users"),
    ({"num_users": 65}, "wireless.num_users"),
    ({"num_rx_antennas": 0}, "wireless.num_rx_antennas"),
    ({"num_rx_antennas": 257}, "wireless.num_rx_antennas"),
    ({"distances_m": [100, 0.0]}, "wireless.distances_m"),
    ({"distances_m": [100, 200], "num_users": 3}, "wireless.distances_m"),
    ({"angles_deg": [0, 90]}, "wireless.angles_deg"),
    ({"d_min_m": 500, "d_max_m": 100}, "wireless.d_max_m"),
    ({"pathloss_model": "okumura"}, "wireless.pathloss_model"),
    ({"shadowing_std_db": -1}, "wireless.shadowing_std_db"),
    ({"carrier_frequency_hz": 0}, "wireless.carrier_frequency_hz"),
    ({"bandwidth_hz": float("nan")}, "wireless.bandwidth_hz"),
    ({"seed": -1}, "wireless.seed"),
    ({"bogus_field": 1}, "wireless.bogus_field"),
    # absurd magnitudes are refused (never an OverflowError or an inf inside the engine)
    ({"tx_power_dbm": 3113}, "wireless.tx_power_dbm"),
    ({"jammer_power_dbm": 3113}, "wireless.jammer_power_dbm"),
    ({"noise_power_dbm": 3113}, "wireless.noise_power_dbm"),
    ({"tx_power_dbm": 10**400}, "wireless.tx_power_dbm"),
    ({"tx_power_w": 10**400}, "wireless.tx_power_w"),
    ({"tx_power_w": [1e-4, 10**400]}, "wireless.tx_power_w"),
    ({"tx_power_w": 1e308}, "wireless.tx_power_w"),
    ({"jammer_power_w": 1e308}, "wireless.jammer_power_w"),
    ({"noise_power_w": 1e-300}, "wireless.noise_power_w"),
    ({"channel": {"re": [[1e300]]}}, "wireless.channel.re"),
    ({"channel": {"re": [[10**400]]}}, "wireless.channel.re.0.0"),
    ({"distances_m": [10**400]}, "wireless.distances_m.0"),
]


@pytest.mark.parametrize("data,field", BAD, ids=[f for _, f in BAD])
def test_bad_input_names_the_field(data, field):
    with pytest.raises(InputError) as err:
        WirelessConfig.parse(data)
    assert err.value.field == field, str(err.value)
    assert str(err.value).startswith(field + ": ")
    assert len(str(err.value).splitlines()) == 1


def test_unknown_attack_lists_the_allowed_values():
    with pytest.raises(InputError) as err:
        WirelessConfig.parse({"attack": "nuke"})
    for name in ["none", "white", "worst_sum_rate", "worst_strongest_user", "targeted", "worst_max_user_numeric"]:
        assert name in err.value.reason


def test_nested_field_prefix_is_kept():
    with pytest.raises(InputError) as err:
        WirelessConfig.parse({"attack": "targeted"}, field="scenario.wireless")
    assert err.value.field == "scenario.wireless.target_user"


def test_config_is_frozen():
    cfg = WirelessConfig.parse({})
    with pytest.raises(Exception):
        cfg.tx_power_w = 1.0
