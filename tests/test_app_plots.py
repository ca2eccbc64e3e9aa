"""The app's own plot builders are pure: plain data in, a plotly figure out."""
from studio import plots


def test_placement_map_has_the_base_station_and_every_user():
    fig = plots.placement_map([100.0, -200.0, 0.0], [0.0, 50.0, -300.0], ["a", "b", "c"],
                              color_values=[0.01, 0.2, 0.5], highlight=1, ring_m=(100.0, 1000.0))
    names = [t.name for t in fig.data]
    assert "base station" in names and "users" in names and "jammer's target" in names
    users = next(t for t in fig.data if t.name == "users")
    # numbered as the page's table (titles beside eight markers piled up); the titles on hover
    assert list(users.x) == [100.0, -200.0, 0.0] and list(users.text) == ["1", "2", "3"]
    assert list(users.hovertext) == ["a", "b", "c"]
    assert fig.layout.yaxis.scaleanchor == "x"  # metres are metres on both axes


def test_eigenmode_bars_show_the_share_of_the_budget():
    fig = plots.eigenmode_bars([3e-13, 1e-13, 0.0], budget_w=4e-13)
    assert list(fig.data[0].y) == [75.0, 25.0, 0.0]
    assert list(fig.data[0].x) == ["1", "2", "3"]


def test_presenter_mode_enlarges_plots():
    small = plots.eigenmode_bars([1.0], presenter=False)
    big = plots.eigenmode_bars([1.0], presenter=True)
    assert big.layout.height > small.layout.height and big.layout.font.size > small.layout.font.size


def test_figure_html_is_self_contained():
    html = plots.figure_html(plots.eigenmode_bars([1.0]))
    assert b"<html" in html and b"plotly.js" in html.lower() or b"Plotly" in html
    assert b'<script src="http' not in html and b"<script src='http" not in html  # opens offline


def test_a_condition_has_one_colour_in_every_figure():
    from types import SimpleNamespace

    from plotly.subplots import make_subplots
    from rmtllmf_core.experiment.result import Condition
    from rmtllmf_core.studies import plots as core

    acc = {c: {"digits": 0.5} for c in Condition}
    res = SimpleNamespace(accuracy=acc, average_normalized={c: 0.5 for c in Condition})
    bars = {t.name: t.marker.color for t in core.accuracy_bars(res, list(Condition)).data}
    assert bars["clean fusion"] == core.CLEAN_COLOR and len(set(bars.values())) == len(Condition)
    assert bars["attacked, no defense"] == core.DEFENSE_COLORS["none"]           # as in the sweeps' curves
    assert bars["attacked + defense"] == core.DEFENSE_COLORS["rmtllmf"]
    channels = {t.name: t.marker.color if t.type == "bar" else t.line.color
                for t in core.channel_bars({"ideal": res, "P1": res}).data}
    assert channels == {"no defense": core.DEFENSE_COLORS["none"], "R-MTLLMF": core.DEFENSE_COLORS["rmtllmf"],
                        "fusion without noise (50.0%)": core.CLEAN_COLOR}
    grid = make_subplots(rows=1, cols=3)
    plots.side_by_side(grid)
    assert grid.layout.yaxis.showticklabels is not False and grid.layout.yaxis3.showticklabels is False


def test_mse_curves_one_line_per_attack_sorted_by_power():
    rows = [{"attack": "white", "jammer_power_dbm": -100.0, "average_mse": 0.3},
            {"attack": "white", "jammer_power_dbm": -140.0, "average_mse": 0.02},
            {"attack": "worst_sum_rate", "jammer_power_dbm": -140.0, "average_mse": 0.05}]
    fig = plots.mse_curves(rows, labels={"white": "white noise"})
    assert [t.name for t in fig.data] == ["white noise", "worst_sum_rate"]
    assert list(fig.data[0].x) == [-140.0, -100.0] and list(fig.data[0].y) == [0.02, 0.3]
    assert fig.layout.yaxis.type == "log"


def _sweep_rows(x_key, xs, attacks=("none", "worst_sum_rate"), defenses=("none", "freeze", "realign", "rmtllmf")):
    """Rows shaped as `sweeps.snr_sweep` / `gain_sweep` return them (made-up numbers)."""
    rows = []
    for a in attacks:
        for d in defenses:
            for i, v in enumerate(xs):
                hurt = 0.0 if a == "none" else 0.2 * i
                rows.append({"attack": a, "defense": d, x_key: v, "jammer_power_dbm": None if a == "none" else -130.0,
                             "avg_normalized": 0.9 - hurt * (0.5 if d == "rmtllmf" else 1.0),
                             "avg_normalized_clean": 0.95, "avg_normalized_attacked": 0.9 - hurt,
                             "avg_normalized_clean_realigned": 0.96 if d in ("realign", "rmtllmf") else None,
                             "mean_mse": 0.013 if a == "none" else 0.013 * 4 ** i,
                             "rejection_rate": 0.1 + 0.2 * i, "rejection_rate_attacked": 0.1 + 0.2 * i})
                if x_key == "jammer_power_dbm":
                    rows[-1]["jammer_power_dbm"] = v
    return rows


def test_snr_curves_show_every_defense_the_references_and_the_paper_conditions():
    from rmtllmf_core.studies import plots as core_plots
    from rmtllmf_core.science.wireless.presets import PAPER_JAMMER_DBM, PAPER_SU_JAMMER_DBM

    rows = _sweep_rows("jammer_power_dbm", [-150.0, -130.0, -110.0])
    fig = core_plots.snr_curves(rows + [{**r, "attack": "worst_strongest_user"} for r in rows if r["attack"] != "none"])
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert legend[:6] == ["no defense", "freeze only", "realign only", "R-MTLLMF (freeze + realign)",
                          "clean fusion (no noise)", "clean fusion + realign (control)"]
    # one panel per jammer; the ideal channel (attack none) as a point per defense left of the sweep
    assert [a.text for a in fig.layout.annotations][:3] == ["worst case: sum rate (P1)", "worst case: strongest user (P2)",
                                                            "H0 rejection rate versus the users' mean MSE"]
    ideal = [t for t in fig.data if t.mode == "markers" and t.hovertemplate and "ideal channel" in t.hovertemplate]
    assert len(ideal) == 2 * 4 and all(t.x[0] < -150.0 for t in ideal)
    assert list(fig.layout.xaxis.ticktext)[0] == "no jammer"
    rmtllmf = next(t for t in fig.data if t.name.startswith("R-MTLLMF") and t.xaxis == "x" and t.mode == "lines+markers")
    assert list(rmtllmf.x) == [-150.0, -130.0, -110.0] and list(rmtllmf.y) == [90.0, 80.0, 70.0]  # in %
    control = next(t for t in fig.data if t.name == "clean fusion + realign (control)")
    assert list(control.y) == [96.0, 96.0]
    # the paper's worst-case budgets as vertical lines in their own panels
    vlines = {(s.xref, s.x0) for s in fig.layout.shapes if s.type == "line"}
    assert ("x", PAPER_JAMMER_DBM) in vlines and ("x2", PAPER_SU_JAMMER_DBM) in vlines
    # below: the rejection rate against the mean MSE (log), rising along the sweep
    rejection = [t for t in fig.data if t.xaxis == "x3" and t.x[0] is not None]
    assert rejection and fig.layout.xaxis3.type == "log"
    sr = next(t for t in rejection if t.name == "no defense" and t.marker.symbol == "square")
    assert list(sr.y) == sorted(sr.y) and list(sr.x) == sorted(sr.x)
    assert "MSE" in fig.layout.xaxis3.title.text and "%" in fig.layout.yaxis3.title.text
    assert fig.layout.xaxis.title.text == "jammer power (dBm)" and "(%)" in fig.layout.yaxis.title.text


def test_snr_curves_without_rejection_or_control_still_draw():
    from rmtllmf_core.studies import plots as core_plots

    rows = [{k: v for k, v in r.items() if k not in ("rejection_rate", "avg_normalized_clean_realigned")}
            for r in _sweep_rows("jammer_power_dbm", [-140.0, -120.0], attacks=("worst_sum_rate",), defenses=("none",))]
    fig = core_plots.snr_curves(rows)   # rows of an older sweep: no rejection panel, no control line
    assert [t.name for t in fig.data] == ["no defense", "clean fusion (no noise)"]
    assert "xaxis2" not in fig.layout or fig.layout.xaxis2.title.text is None


def test_gain_curves_one_panel_per_channel_with_the_calibrated_mark():
    from rmtllmf_core.studies import plots as core_plots

    rows = _sweep_rows("symbol_gain_db", [0.0, 10.0, 20.0], defenses=("none", "rmtllmf"))
    fig = core_plots.gain_curves(rows, fitted_db=12.5)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "ideal channel (no jammer)" and titles[1] == "worst case: sum rate (P1)<br>jammer -130 dBm"
    assert sum(1 for s in fig.layout.shapes if s.type == "line" and s.x0 == 12.5) == 2  # in each panel
    assert fig.layout.xaxis.title.text == "reference amplitude (dB)"
    none_ideal = next(t for t in fig.data if t.name == "no defense" and t.xaxis == "x")
    assert list(none_ideal.x) == [0.0, 10.0, 20.0]


def test_exported_csv_rounds_float32_noise_to_six_significant_digits():
    from studio import ui

    text = ui.csv_bytes([{"accuracy (%)": 97.00000286102295, "mse": 0.000123456789}]).decode()
    assert text.splitlines() == ["accuracy (%),mse", "97,0.000123457"]


def test_leaderboard_and_resilience_figures_read_their_rows():
    from rmtllmf_core.studies import plots as core

    rows = [{"method": m, "attack": a, "defense": d, "mse_aware": False, "average_normalized": v,
             "clean_normalized": 90.0} for m, v in (("iso_c", 30.0), ("tsv_m", 70.0))
            for a in ("none", "worst_sum_rate") for d in ("none", "rmtllmf")]
    heat = core.leaderboard_heatmap(rows, {"iso_c": "Iso-C", "tsv_m": "TSV-M"})
    assert list(heat.data[0].y) == ["TSV-M", "Iso-C"]                         # best under the jammer first
    assert heat.data[0].zmin == 0 and heat.data[0].zmax == 100                # a fixed, stated range
    table = [{"attack": "worst_sum_rate", "protection": p, "airtime_factor": b, "average_normalized": 0.5,
              "setting": "analogue"} for p in ("none", "ai", "phy", "phy+ai") for b in (1, 2, 4, 8)]
    fig = core.resilience_curves(table)
    assert {t.name for t in fig.data} == {"no protection", "AI: R-MTLLMF", "PHY: best protection in the budget",
                                          "PHY + AI"}
    assert list(fig.layout.yaxis.range) == [0, 105]


def test_sweep_and_tasks_plots_have_fixed_ranges_and_human_labels():
    from rmtllmf_core.studies import plots as core

    rows = [{"attack": "worst_sum_rate", "defense": d, "jammer_power_dbm": p, "avg_normalized": 0.96 + 0.001 * p / 100,
             "avg_normalized_clean": 0.97, "mean_mse": 0.1, "rejection_rate": None} for d in ("none", "rmtllmf")
            for p in (-140.0, -130.0)]
    fig = core.snr_curves(rows, rejection=False)
    assert list(fig.layout.yaxis.range) == [0, 105]                  # not zoomed onto 95-97%
    summary = [{"attack": "none", "defense": "none", "n_tasks": n, "mean": m, "std": 0.05, "min": m, "max": m,
                "combinations": 1} for n, m in ((2, 1.02), (3, 0.98))]
    bands = core.tasks_bands(summary)
    assert {t.name for t in bands.data if t.name} == {"ideal channel (no jammer), no defense"}
    assert bands.layout.yaxis.range[1] > 105 and "above 100%" in bands.layout.annotations[0].text


def test_the_time_left_of_a_resumed_sweep_is_within_30_percent_after_three_runs():
    """Cached points arrive at once (no pace); the first cold run carries the zoo's and the clean side's
    cost (slower); after three runs the estimate is within 30% of the truth, and says nothing earlier."""
    import re

    from studio.engine import Pace

    total, cached, first_s, each_s = 12, 4, 9.0, 5.0
    pace, t = Pace(0.0), 0.0
    for i in range(cached):                                   # the resumed sweep's stored points
        t += 0.01
        assert pace.left(t, (i + 1) / total) == ""
    said = []
    for k in range(total - cached):
        t += first_s if k == 0 else each_s
        said.append(pace.left(t, (cached + k + 1) / total))
        if k == 2:
            true_left = (total - cached - 3) * each_s
            guess = float(re.search(r"about (\d+) s left", said[-1]).group(1))
            assert abs(guess - true_left) <= 0.3 * true_left, (guess, true_left)
    assert said[-1] == ""                                     # done: nothing left to say


def test_a_frozen_figure_shows_and_exports_what_the_figure_would():
    """A figure cached for every session hands Streamlit the dict it made once: the same chart, and
    a caller that edits the dict it got does not change what the next session sees."""
    import json

    import plotly.io as pio
    import plotly.tools

    fig = plots.style(plots.eigenmode_bars([3e-13, 1e-13], budget_w=4e-13))
    frozen = plots.frozen(fig)
    as_streamlit = lambda f: json.loads(pio.to_json(plotly.tools.return_figure_from_figure_or_data(f, True),
                                                    validate=False))
    assert as_streamlit(frozen) == as_streamlit(fig)
    frozen.to_dict()["layout"] = {}
    assert as_streamlit(frozen) == as_streamlit(fig)
    assert b"<html" in plots.figure_html(frozen).lower()


def test_figures_wear_the_template_whether_or_not_it_is_plotlys_default(monkeypatch):
    """The app makes its template plotly's default once (studio/ui.py: no validation per figure); a process that has not
    (the CLI's report, a library user) gets it set on each figure: the same figure either way."""
    import plotly.io as pio

    from rmtllmf_core.studies import plots as core
    from studio import ui  # noqa: F401  (the app's frame imports it: it sets the default)

    assert pio.templates.default == core.TEMPLATE
    app = plots.style(plots.eigenmode_bars([3e-13, 1e-13], budget_w=4e-13)).to_dict()
    monkeypatch.setattr(pio.templates, "default", "plotly")
    other = plots.style(plots.eigenmode_bars([3e-13, 1e-13], budget_w=4e-13)).to_dict()
    assert app == other and app["layout"]["template"]["layout"]["paper_bgcolor"] == "white"
