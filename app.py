"""R-MTLLMF Studio: the router and the frame around every page.

    streamlit run app.py

Each run: page config -> access gate -> the session's scenario (from the link on first open) ->
shared sidebar (presets, presenter mode, scenario file, share link) -> the chosen page ->
the scenario written back into the URL. Pages build a Scenario, ask the engine, draw the result.
"""
from __future__ import annotations

import streamlit as st

from studio import access, engine, frame, sidebar, state, ui

# the favicon is drawn here: a material-icon favicon would be fetched from Google's font servers. Presenter
# mode (the toggle, or ?presenter=1 in a link) starts with the sidebar folded: a projector's width is the page's
presenting = st.session_state.get(state.PRESENTER, st.query_params.get(state.PRESENTER) in ("1", "true"))
st.set_page_config(page_title="R-MTLLMF Studio", page_icon=ui.favicon(), layout="wide",
                   initial_sidebar_state="collapsed" if presenting else "auto")


# The access gate: off unless .streamlit/secrets.toml configures [access] or [auth] (studio/access.py;
# rules in rmtllmf_core.serve.hosting). Heavy work meets the host's caps and queue in studio/engine.py.
if not access.require_access():
    st.stop()

state.init_session()

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/scenario.py", title="Scenario", icon=":material/cell_tower:", url_path="scenario"),
    st.Page("pages/story.py", title="Story", icon=":material/auto_stories:", url_path="story"),
    st.Page("pages/fusion.py", title="Fusion & defense", icon=":material/merge:", url_path="fusion"),
    st.Page("pages/tradeoffs.py", title="Trade-offs", icon=":material/show_chart:", url_path="tradeoffs"),
    st.Page("pages/ablations.py", title="Ablations", icon=":material/science:", url_path="ablations"),
    st.Page("pages/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:", url_path="leaderboard"),
    st.Page("pages/resilience.py", title="Resilience", icon=":material/shield:", url_path="resilience"),
    st.Page("pages/arena.py", title="Arena", icon=":material/swords:", url_path="arena"),
    st.Page("pages/about.py", title="About", icon=":material/info:", url_path="about"),
]
page = st.navigation(PAGES)
if state.presenter():
    ui.presenter_style()
share_slot = sidebar.draw()
refused = st.container()  # the link's refused values, listed above the page once it has named its controls
with frame.framed():  # see studio/frame.py: a page never runs without this frame
    page.run()
ui.link_summary(refused, state.link_errors())
sidebar.share(share_slot)
state.sync_url()
engine.warm_up(state.scenario().zoo)  # the model pages find the zoo loaded
