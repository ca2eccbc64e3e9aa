"""R-MTLLMF Studio: the router and the frame around every page.

    streamlit run app.py

Each run: page config -> access gate -> the session's scenario (from the link on first open) ->
shared sidebar (presets, presenter mode, scenario file, share link) -> the chosen page ->
the scenario written back into the URL. Pages build a Scenario, ask the engine, draw the result.
"""
from __future__ import annotations

import streamlit as st

from studio import engine, frame, sidebar, state, ui

# the favicon is drawn here: a material-icon favicon would be fetched from Google's font servers
st.set_page_config(page_title="R-MTLLMF Studio", page_icon=ui.favicon(), layout="wide")


# ---- Access gate and compute wrapper -----------------------------------------------------------
# The one place for a hosted instance's guards (issue 6):
#  - `gate()` returns True when this session may see the app; drawing a sign-in form and returning
#    False stops the run before any engine call.
#  - `run_heavy(job, *args, **kwargs)` is how every heavy engine call (pipeline run, sweep) runs:
#    wrap it in a bounded queue / caps here. Off on a laptop: everyone is in, jobs run directly.
# Wired to studio/access.py and studio/waiting.py (rules in rmtllmf_core.hosting): the gate is off unless .streamlit/secrets.toml configures [access]
# or [auth]; heavy calls get the host's caps and the process-wide compute queue (place in line,
# Cancel, identical requests shared, cache hits skip the line).
def gate() -> bool:
    from studio import access

    return access.require_access()


def run_heavy(job, /, *args, **kwargs):
    from studio import waiting

    return waiting.run_heavy(job, *args, **kwargs)


if not gate():
    st.stop()
engine.set_runner(run_heavy)
# -------------------------------------------------------------------------------------------------

state.init_session()

PAGES = [
    st.Page("pages/scenario.py", title="Scenario", icon=":material/cell_tower:", url_path="scenario", default=True),
    st.Page("pages/fusion.py", title="Fusion & defense", icon=":material/merge:", url_path="fusion"),
    st.Page("pages/tradeoffs.py", title="Trade-offs", icon=":material/show_chart:", url_path="tradeoffs"),
    st.Page("pages/ablations.py", title="Ablations", icon=":material/science:", url_path="ablations"),
    st.Page("pages/about.py", title="About", icon=":material/info:", url_path="about"),
]
page = st.navigation(PAGES)
share_slot = sidebar.draw()
with frame.framed():  # see studio/frame.py: a page never runs without this frame
    page.run()
sidebar.share(share_slot)
state.sync_url()
engine.warm_up(state.scenario().zoo)  # the model pages find the zoo loaded
