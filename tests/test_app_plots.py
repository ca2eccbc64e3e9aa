"""The app's own plot builders are pure: plain data in, a plotly figure out."""
from studio import plots


def test_placement_map_has_the_base_station_and_every_user():
    fig = plots.placement_map([100.0, -200.0, 0.0], [0.0, 50.0, -300.0], ["a", "b", "c"],
                              color_values=[0.01, 0.2, 0.5], highlight=1, ring_m=(100.0, 1000.0))
    names = [t.name for t in fig.data]
    assert "base station" in names and "users" in names and "jammer's target" in names
    users = next(t for t in fig.data if t.name == "users")
    assert list(users.x) == [100.0, -200.0, 0.0] and list(users.text) == ["a", "b", "c"]
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


def test_engine_figures_get_colours_by_meaning_and_shared_labels():
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = go.Figure([go.Bar(name="attacked, no defense", y=[1]), go.Bar(name="other", y=[2], marker_color="#123456")])
    plots.recolor(fig)
    assert fig.data[0].marker.color == plots.TRACE_COLORS["attacked, no defense"] and fig.data[1].marker.color == "#123456"
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
