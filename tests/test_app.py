"""The dashboard through Streamlit's AppTest: every page renders, widgets drive the numbers,
presets, links, uploads and bad values behave. Runs on the embedded zoo with a light scenario
(few tasks, few evaluation samples) so each cold engine run stays short."""
import json
import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rmtllmf_core.experiment.presets import default_scenario, preset_scenario
from studio import codec

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = ("home", "scenario", "story", "fusion", "tradeoffs", "ablations", "leaderboard", "resilience", "arena", "about")
TIMEOUT = 180  # a cold engine run on 2 busy cores, plus the zoo's first load


@pytest.fixture(scope="module")
def default():
    return default_scenario()


@pytest.fixture(scope="module")
def light(default):
    """Three users, few test samples, a short realignment, no lambda search: quick cold runs, in the
    calibrated error model, under which the channel visibly moves the accuracy."""
    tasks = list(default.tasks[:3])
    return default.replace(**{"tasks": tasks, "wireless.num_users": len(tasks), "evaluation.samples_per_task": 40,
                              "defense.realign_steps": 3, "defense.shots_per_class": 2,
                              "fusion.lambda_mode": "heuristic", "evaluation.clean_realign_control": False})


def open_app(page="scenario", query=None):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    at.run()
    if page != "home":  # the app opens on Home
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def widget(at, kind, path, page="scenario"):
    """The widget bound to a scenario path (keys are page.path.revision; the newest revision wins)."""
    found = [w for w in getattr(at, kind) if w.key and w.key.startswith(f"{page}.{path}.")]
    assert found, f"no {kind} for {path} on {page}"
    return max(found, key=lambda w: int(w.key.rsplit(".", 1)[1]))


def scenario_of(at):
    return at.session_state["studio.scenario"]


def errors(at):
    return [e.value for e in at.error]


def test_the_app_default_is_the_engine_default(default):
    from studio import state

    assert state.default_scenario.__wrapped__() == default  # read from the card, without the weights


@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow) if p == "story" else p for p in PAGES])
def test_every_page_renders_without_exception(page, light, default):
    at = open_app(page, codec.to_query(light, default))
    assert at.title and not errors(at)
    assert len(at.sidebar.button) >= 4  # presets and reset


def test_scenario_page_attack_changes_the_numbers(default):
    at = open_app()
    before = (metric(at, "Average MSE"), metric(at, "Sum rate, b/s/Hz"))
    widget(at, "selectbox", "wireless.attack").set_value("worst_sum_rate").run()
    assert not at.exception
    after = (metric(at, "Average MSE"), metric(at, "Sum rate, b/s/Hz"))
    assert after != before and float(after[0]) > float(before[0])
    assert scenario_of(at).wireless.attack == "worst_sum_rate"
    assert at.query_params.get("wireless.attack") == "worst_sum_rate"
    assert len(at.get("plotly_chart")) == 2  # placement map and the jammer's eigenmodes


def test_fusion_page_attack_changes_the_numbers(light, default):
    at = open_app("fusion", codec.to_query(light.replace(**{"wireless.attack": "none"}), default))
    before = metric(at, "Received (no jammer), no defense")        # no "attacked" without a jammer
    widget(at, "selectbox", "wireless.attack", "fusion").set_value("worst_sum_rate").run()
    assert not at.exception and not errors(at)
    assert metric(at, "Jammed, no defense") != before
    assert len(at.get("plotly_chart")) == 2  # accuracy bars and cosine heatmaps


def unusable(at):
    return [w.value for w in at.warning if w.value.startswith("Unusable channel")]


def test_an_unusable_channel_is_said_on_the_scenario_and_fusion_pages(light, default):
    assert unusable(open_app()) == []  # the calibrated default uplink is fine
    noisy = light.replace(**{"wireless.noise_power_w": 1e-13})  # -100 dBm per antenna: pure noise
    for page in ("scenario", "fusion"):
        at = open_app(page, codec.to_query(noisy, default))
        [warning] = unusable(at)
        assert "SINR per user" in warning and "thermal noise -100.0 dBm per antenna" in warning


def test_fusion_cold_run_shows_a_status_and_a_cache_hit_redraws_without_one(light, default):
    at = open_app("fusion", codec.to_query(light.replace(seed=12345), default))  # nobody computed this one
    assert [s.label for s in at.status] and "done" in at.status[0].label
    shown = [(m.label, m.value) for m in at.metric]
    at.run()  # the same scenario again: straight from the disk cache
    assert not at.exception and not at.status
    assert [(m.label, m.value) for m in at.metric] == shown
    assert any("from the result cache" in c.value for c in at.caption)


def test_fusion_page_defense_switch_changes_the_defended_numbers(light, default):
    at = open_app("fusion", codec.to_query(light.replace(**{"wireless.attack": "worst_sum_rate"}), default))
    assert light.defense.freeze and light.defense.realign
    before = metric(at, "Jammed + defense")
    widget(at, "toggle", "defense.freeze", "fusion").set_value(False)
    widget(at, "toggle", "defense.realign", "fusion").set_value(False).run()
    assert not at.exception
    assert not scenario_of(at).defense.freeze and not scenario_of(at).defense.realign
    # no defense left: no "+ defense" number (it would be the jammed one, shown as a gain of 0)
    assert metric(at, "Defense") == "off" and metric(at, "Jammed, no defense") != before
    assert not [m for m in at.metric if m.label.endswith("+ defense")]
    labels = [b.label for b in at.get("download_button")]
    assert any("CSV" in x for x in labels) and any("JSON" in x for x in labels) and any("HTML" in x for x in labels)


@pytest.mark.parametrize("name", ["paper_worst_sum_rate", "paper_worst_strongest_user", "paper_ideal"])
def test_a_preset_sets_its_values(name, default):
    at = open_app()
    widget(at, "selectbox", "wireless.attack").set_value("white").run()
    at.button(key=f"preset.{name}").click().run()
    assert not at.exception
    expected = preset_scenario(name, tasks=default.tasks)
    assert scenario_of(at) == expected
    assert widget(at, "selectbox", "wireless.attack").value == expected.wireless.attack
    p_w = expected.wireless.jammer_power_w
    expected_dbm = round(10 * math.log10(p_w) + 30, 2) if p_w > 0 else None
    assert widget(at, "number_input", "wireless.jammer_power_w").value == expected_dbm


def test_url_round_trip_restores_the_scenario_and_numbers():
    at = open_app()
    widget(at, "selectbox", "wireless.attack").set_value("worst_strongest_user").run()
    widget(at, "number_input", "wireless.jammer_power_w").set_value(-110.0).run()
    widget(at, "number_input", "wireless.num_rx_antennas").set_value(12).run()
    widget(at, "number_input", "wireless.seed").set_value(5).run()
    assert not at.exception and not errors(at)
    link = dict(at.query_params)
    # the power travels in dBm, as the widget shows it
    assert {"wireless.attack", "wireless.jammer_power_dbm", "wireless.num_rx_antennas", "wireless.seed"} <= set(link)
    assert link["wireless.jammer_power_dbm"] == "-110"
    shown = [(m.label, m.value) for m in at.metric]

    again = open_app(query=link)  # a new browser session opening the link
    assert scenario_of(again) == scenario_of(at)
    assert [(m.label, m.value) for m in again.metric] == shown
    assert widget(again, "number_input", "wireless.num_rx_antennas").value == 12
    assert dict(again.query_params) == link


def test_a_bad_link_shows_an_error_beside_the_control_and_the_default(default):
    at = open_app(query={"wireless.jammer_power_w": "-1"})
    assert any("jammer" in e.lower() or ">= 0" in e or "greater" in e.lower() for e in errors(at)), errors(at)
    assert scenario_of(at) == default


@pytest.mark.parametrize("zoo", ["ViT-B-32", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "/etc", "../assets/tiny"])
def test_a_link_naming_another_zoo_is_refused(zoo, default):
    """Loading a zoo by name or path could read the disk or the network: only the served zoos."""
    at = open_app(query={"zoo": zoo})
    assert any("serves the zoo" in e for e in errors(at)), errors(at)
    assert scenario_of(at) == default


def test_a_partly_bad_link_keeps_its_valid_parameters_and_names_each_bad_one(default):
    at = open_app(query={"wireless.attack": "worst_sum_rate", "perturb.scale": "per_tensor", "fusion.lambda": "7",
                         "wireless.num_rx_antennas": "x" * 500, "zoo": "ViT-B-32"})
    scn = scenario_of(at)
    assert (scn.wireless.attack, scn.perturb.scale) == ("worst_sum_rate", "per_tensor")   # kept
    assert scn.fusion.lambda_ == default.fusion.lambda_ and scn.zoo == default.zoo        # refused
    text = " ".join(errors(at))
    assert "'7' refused" in text and "serves the zoo" in text
    assert "x" * 61 not in text and "x" * 60 + "..." in text                               # cut to a sane length


def test_a_bad_link_error_sits_with_the_controls():
    at = open_app(query={"wireless.jammer_power_w": "-1"})
    controls = next(c for c in at.columns if len(c.multiselect))  # the column of the users' control
    assert [e.value for e in controls.error] == errors(at)  # the controls' column, by the jammer input


def test_a_fresh_view_draws_no_error_slots_yet_an_edit_shows_its_error_with_the_controls():
    """A page's first run in a session (a new tab, a shared link: nothing edited yet) draws no empty error
    slots under its widgets, which cost a cached page a good share of its server time; from the next
    run on they are there, and an edit's error lands with the controls."""
    at = open_app()
    fresh = len(at.get("empty"))
    at.run()
    assert len(at.get("empty")) >= fresh + 10
    widget(at, "number_input", "wireless.d_max_m").set_value(50.0).run()
    controls = next(c for c in at.columns if len(c.multiselect))
    assert errors(at) and [e.value for e in controls.error] == errors(at)


def test_a_bad_widget_value_shows_an_error_and_keeps_the_last_valid_scenario():
    at = open_app()
    valid = scenario_of(at)
    widget(at, "number_input", "wireless.d_max_m").set_value(50.0).run()
    assert not at.exception
    assert any("d_min_m" in e for e in errors(at)), errors(at)
    assert scenario_of(at) == valid
    assert at.metric  # the page still shows the last valid numbers


def test_removing_every_user_is_refused_with_a_message():
    at = open_app()
    widget(at, "multiselect", "tasks").set_value([]).run()
    assert not at.exception and errors(at)


def test_changing_the_users_keeps_the_scenario_consistent(default):
    at = open_app()
    keep = list(default.tasks[:2])
    widget(at, "multiselect", "tasks").set_value(keep).run()
    assert not at.exception and not errors(at)
    scn = scenario_of(at)
    assert list(scn.tasks) == keep and scn.wireless.num_users == 2
    assert len(at.dataframe[0].value) == 2


def test_scenario_file_download_and_upload(light, default):
    at = open_app()
    download = next(b for b in at.get("download_button") if b.label.startswith("Download the scenario"))
    assert download is not None
    upload = at.sidebar.file_uploader[0]
    upload.upload("scenario.json", json.dumps(light.to_dict()).encode(), mime_type="application/json").run()
    assert not at.exception
    assert scenario_of(at) == light
    assert list(widget(at, "multiselect", "tasks").value) == list(light.tasks)  # widgets redrawn


@pytest.mark.parametrize("content, word", [
    (b"{not json", "JSON"),
    (json.dumps({"zoo": "ViT-B-32", "tasks": ["digits"]}).encode(), "serves the zoo"),
    (json.dumps({"tasks": ["digits"], "wireless": {"attack": "nuke"}}).encode(), "attack"),
    (b'{"tasks": ["digits"], "seed": NaN}', "JSON"),  # the core's upload path refuses NaN
    (json.dumps({"tasks": ["digits"], "evaluation": {"samples_per_task": 5000}}).encode(), "this host allows"),
])
def test_a_bad_scenario_file_shows_an_error(content, word, default):
    at = open_app()
    at.sidebar.file_uploader[0].upload("bad.json", content, mime_type="application/json").run()
    assert not at.exception
    assert any(word in e for e in errors(at)), errors(at)
    assert scenario_of(at) == default


def test_presenter_mode_hides_advanced_controls_and_is_in_the_link():
    at = open_app()
    assert any("advanced" in e.label for e in at.expander)
    assert at.get("plotly_chart") and all("displayModeBar" not in json.loads(c.proto.config)
                                          for c in at.get("plotly_chart"))
    at.sidebar.toggle(key="presenter").set_value(True).run()
    assert not at.exception
    assert not any("advanced" in e.label for e in at.expander)
    assert at.query_params.get("presenter") == "1"
    again = open_app(query={"presenter": "1"})
    assert again.sidebar.toggle(key="presenter").value is True
    # charts without plotly's toolbar, which covered the legends above them on a projector
    configs = [json.loads(c.proto.config) for c in again.get("plotly_chart")]
    assert configs and all(c.get("displayModeBar") is False for c in configs)


def test_placement_table_edits_move_the_users():
    at = open_app()
    at.radio(key=next(r.key for r in at.radio if r.key.startswith("scenario.placement."))).set_value("table").run()
    assert not at.exception and not errors(at)
    scn = scenario_of(at)
    assert scn.wireless.distances_m is not None and len(scn.wireless.distances_m) == len(scn.tasks)


def _tradeoffs_snr_settings(at):
    at.slider(key="snr.range").set_value((-140, -120)).run()
    at.select_slider(key="snr.step").set_value(20).run()       # two powers (the default 5 dB step draws five)
    at.multiselect(key="snr.attacks").set_value(["none", "worst_sum_rate"]).run()
    assert at.multiselect(key="snr.defenses").value == ["none", "freeze", "realign", "rmtllmf"]  # the default
    return at


def chart_spec(at, i):
    return json.loads(at.get("plotly_chart")[i].proto.spec)


@pytest.mark.slow
def test_tradeoffs_sweep_runs_and_resumes_from_the_cache(light, default):
    query = codec.to_query(light, default)
    at = _tradeoffs_snr_settings(open_app("tradeoffs", query))
    assert len(at.get("plotly_chart")) == 1  # the channel's MSE curve is instant; accuracy waits for the run
    at.button(key="snr.run").click().run()
    assert not at.exception and not errors(at)
    assert len(at.get("plotly_chart")) == 2
    names = {t.get("name") for t in chart_spec(at, 1)["data"]}
    assert {"no defense", "freeze only", "realign only", "R-MTLLMF (freeze + realign)", "clean fusion (no noise)",
            "clean fusion + realign (control)"} <= names   # the four defenses and both references
    points = at.dataframe[0].value
    assert len(points) == 2 * 4 * 2 and points["rejection_rate"].between(0, 1).all()
    assert points.loc[points["defense"] == "rmtllmf", "avg_normalized_clean_realigned"].notna().all()

    # a new session with the same settings: every point is in the disk cache, so it draws at once
    again = _tradeoffs_snr_settings(open_app("tradeoffs", query))
    assert not again.exception
    assert len(again.get("plotly_chart")) == 2  # no button press needed
    assert not [b for b in again.button if b.key == "snr.run"]

    # accuracy versus the reference amplitude, on the paper's channels
    again.slider(key="gain.range").set_value((0, 10)).run()
    again.multiselect(key="gain.attacks").set_value(["worst_sum_rate"]).run()
    again.multiselect(key="gain.defenses").set_value(["none"]).run()
    again.button(key="gain.run").click().run()
    assert not again.exception and not errors(again)
    assert len(again.get("plotly_chart")) == 3
    gain = chart_spec(again, 2)
    assert [t["x"] for t in gain["data"] if t.get("name") == "no defense"][0] == [0.0, 10.0]
    assert "reference amplitude (dB)" in json.dumps(gain["layout"])


def test_about_page_shows_the_zoo_equations_and_paper_numbers():
    from rmtllmf_core.experiment import pipeline

    at = open_app("about")
    zoo = pipeline.get_zoo("tiny")
    table = at.dataframe[0].value
    assert len(table) == len(zoo.tasks)
    assert table["head overlap (cos)"].between(-1, 1).all()
    assert len(at.latex) >= 5
    assert len(at.image) == len([t for t in (zoo.card.get("samples") or {}) if t in zoo.tasks])
    mse = at.dataframe[1].value
    assert list(mse["average MSE, paper"]) == [0.013, 0.21, 0.16]


def test_ablation_sweep_runs_and_follows_the_attack(light, default):
    at = open_app("ablations", codec.to_query(light, default))
    at.multiselect(key="ablation.shots").set_value([1]).run()
    at.button(key="ablation.run").click().run()
    assert not at.exception and not errors(at)
    assert at.get("plotly_chart")
    ideal = at.dataframe[0].value["accuracy (%)"].tolist()

    widget(at, "selectbox", "wireless.attack", "ablations").set_value("worst_sum_rate").run()
    assert not at.get("plotly_chart")  # another base scenario: its sweep waits for the button
    at.button(key="ablation.run").click().run()
    assert not at.exception and not errors(at)
    assert at.dataframe[0].value["accuracy (%)"].tolist() != ideal


@pytest.mark.slow
def test_leaderboard_page_computes_on_request_then_draws_from_the_cache(monkeypatch):
    from rmtllmf_core.studies import leaderboard

    real = leaderboard.preset_scenario
    monkeypatch.setattr(leaderboard, "preset_scenario", lambda name, **kw: real(name, **kw).replace(**{
        "tasks": ["digits", "textures"], "wireless.num_users": 2, "evaluation.samples_per_task": 20,
        "defense.realign_steps": 2, "defense.shots_per_class": 1, "fusion.lambda_mode": "heuristic"}))
    at = open_app("leaderboard")
    assert not at.get("plotly_chart") and not errors(at)     # nothing computed yet: a button
    at.button(key="leaderboard.run").click().run()
    assert not at.exception and not errors(at)
    assert len(at.get("plotly_chart")) == 2                     # the heatmap and the bars
    table = at.dataframe[0].value
    assert len(table) == 9 * 3 * 2 and set(table["defense"]) == {"no defense", "R-MTLLMF"}
    assert table["normalised (%)"].between(0, 150).all()
    assert any("Without noise" in m.value for m in at.markdown)
    again = open_app("leaderboard")                             # every run cached: at once, no button
    assert len(again.get("plotly_chart")) == 2 and not [b for b in again.button if b.key == "leaderboard.run"]
    again.segmented_control(key="leaderboard.weighting").set_value("MSE-aware").run()
    assert not again.get("plotly_chart")                        # other runs: they wait for the button


def test_the_story_walks_its_steps_with_numbers_from_its_runs(monkeypatch):
    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.studies import story

    real = story.preset_scenario
    monkeypatch.setattr(story, "preset_scenario", lambda name, **kw: real(name, **kw).replace(**{
        "tasks": ["digits", "textures", "vehicles"], "wireless.num_users": 3, "evaluation.samples_per_task": 20,
        "defense.realign_steps": 2, "defense.shots_per_class": 1, "fusion.lambda_mode": "heuristic",
        "evaluation.clean_realign_control": False}))
    at = open_app("story")
    assert not errors(at) and [m.label for m in at.metric] == ["Clean fusion"]
    seen = []
    for i in range(len(story.STEPS)):
        assert not at.exception, [e.message for e in at.exception]
        seen.append(([m.label for m in at.metric], [m.value for m in at.metric]))
        assert len(at.get("plotly_chart")) == 1
        if i < len(story.STEPS) - 1:
            at.button(key="story.next").click().run()
    assert seen[1][0] == ["Clean fusion", "Average MSE"]                      # the jammer: the channel
    assert seen[2][0] == ["Clean fusion", "Jammed, no defense"]              # the damage
    assert seen[3][0] == ["Clean fusion", "Jammed, no defense", "Jammed + R-MTLLMF"]
    text = " ".join(m.value for m in at.markdown)
    assert "still" in text and "points below the fusion without noise" in text and "{" not in text and "nan" not in text
    at.button(key="story.back").click().run()
    assert at.session_state["story.step"] == "repair"
    at.button(key="story.explore").click().run()                             # the step, on the Fusion page
    assert not at.exception and scenario_of(at).wireless.attack == "worst_sum_rate"
    home = open_app("home")                                                  # the first view: the same runs
    repair = story.numbers(story.HEADLINE, *[pipeline.cached(story.scenario(s)) for s in (story.HEADLINE,
                                                                                          story.STEPS[0])])
    assert [m.label for m in home.metric] == ["Fusion without noise", "Jammed (P1), no defense",
                                              "Jammed (P1) + R-MTLLMF"]
    assert [m.value for m in home.metric] == [f"{repair[c]:.1f}%" for c in ("clean", "attacked", "defended")]
    assert len(home.get("plotly_chart")) == 1 and home.button(key="home.story")


@pytest.mark.parametrize("landed", [(), ("sum rate",)])
def test_home_says_how_many_headline_runs_have_landed_on_a_first_start(monkeypatch, landed):
    from studio import engine

    # the P1 run landed or not, the ideal one not yet: Home waits for both (its value is only tested for None)
    monkeypatch.setattr(engine, "stored", lambda scn: object() if any(
        w in scn.wireless.attack.replace("_", " ") for w in landed) else None)
    at = open_app("home")
    assert not at.metric and not at.get("plotly_chart")
    assert [i.value for i in at.info if "headline runs" in i.value][0].count(f"({len(landed)} of the first 2 ready)") == 1


def test_a_cached_results_figures_are_built_once_for_every_session(light, default, monkeypatch):
    from rmtllmf_core.studies import plots as core

    calls = []
    real = core.accuracy_bars
    monkeypatch.setattr(core, "accuracy_bars", lambda *a, **k: calls.append(1) or real(*a, **k))
    query = codec.to_query(light.replace(seed=4242), default)      # a result no other test drew
    first = open_app("fusion", query)
    second = open_app("fusion", query)                               # another session, the same result
    assert not first.exception and not second.exception
    assert len(calls) == 1
    assert [m.value for m in first.metric] == [m.value for m in second.metric]


def test_more_test_samples_than_the_zoo_holds_is_refused_by_name(default):
    at = open_app("fusion", {"evaluation.samples_per_task": "5000"})
    assert any("at most 400" in e and "test split" in e for e in errors(at)), errors(at)


def test_the_sidebar_marks_the_active_preset_and_the_fusion_page_says_the_channel():
    at = open_app()
    assert [b.key for b in at.sidebar.button if b.proto.type == "primary"] == ["preset.paper_ideal"]  # the default
    at.sidebar.button(key="preset.paper_worst_sum_rate").click().run()
    assert [b.key for b in at.sidebar.button if b.proto.type == "primary"] == ["preset.paper_worst_sum_rate"]
    widget(at, "number_input", "wireless.num_rx_antennas").set_value(12).run()
    assert not [b for b in at.sidebar.button if b.proto.type == "primary"]                       # edited: none


def test_a_page_that_stops_early_still_has_the_presets(monkeypatch):
    from rmtllmf_core.studies import leaderboard
    from rmtllmf_core.errors import InputError

    def refuse(*a, **k):
        raise InputError("leaderboard", "no leaderboard today")

    monkeypatch.setattr(leaderboard, "work", refuse)
    at = open_app("leaderboard")
    assert "no leaderboard today" in " ".join(errors(at))
    assert {b.key for b in at.sidebar.button} >= {"preset.paper_ideal", "preset.reset"}


def test_arena_page_computes_on_request_and_links_each_cell_to_the_fusion_page(monkeypatch):
    from rmtllmf_core.experiment import presets
    from rmtllmf_core.studies import arena

    real = presets.preset_scenario
    monkeypatch.setattr(presets, "preset_scenario", lambda name, **kw: real(name, **kw).replace(**{
        "tasks": ["digits", "textures"], "wireless.num_users": 2, "evaluation.samples_per_task": 20,
        "defense.realign_steps": 2, "defense.shots_per_class": 1, "fusion.lambda_mode": "heuristic"}))
    monkeypatch.setattr(arena, "DEFENSES", ("none", "rmtllmf", "spectral+rmtllmf"))
    monkeypatch.setattr(arena, "ADAPTIVE", ("row_periodic",))
    at = open_app("arena")
    at.segmented_control(key="arena.seeds").set_value("0").run()
    assert not at.get("plotly_chart") and not errors(at)          # nothing computed yet: a button
    at.button(key="arena.run").click().run()
    assert not at.exception and not errors(at)
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert len(table) == 3 * 3 and (table["adaptive (%)"] <= table["non-adaptive (%)"] + 1e-9).all()
    assert table["open adaptive"].str.startswith("fusion?").all()
    p1 = table[table["channel"].str.contains("sum rate")]
    assert p1["open non-adaptive"].str.contains("wireless.attack=worst_sum_rate").all()
    assert any("R-MTLLMF gets" in m.value for m in at.markdown)
