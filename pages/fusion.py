"""Fusion and defense: how the base station merges the received task vectors, and what the
defenses give back. Accuracy per task, cosine similarity of the task vectors, WDE, rejection rate.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rmtllmf_core.studies import plots as result_plots
from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.science.methods import METHODS
from rmtllmf_core.experiment.result import Condition, Result
from rmtllmf_core.experiment.scenario import Scenario
from studio import engine, fields, frame, plots, state, ui
from studio.editor import Editor
from studio.widgets import channel_controls

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
st.title("Fusion & defense")
st.caption("The base station fuses the task vectors it received over the jammed uplink; R-MTLLMF "
           "freezes the embeddings and realigns on a few samples per class. Same channel as the Scenario page.")

ed = Editor("fusion")
scn = ed.base
d = scn.defense

controls, view = st.columns([1, 3] if presenter else [1, 2], gap="large")
with controls:
    st.subheader("Channel", divider="gray")
    channel_controls(ed, scn, columns=False)

    st.subheader("R-MTLLMF", divider="gray")
    # presenter mode: short labels (its larger text in a narrower column cut the long ones)
    ed.toggle("defense.freeze", "Freeze embeddings" if presenter else "Freeze: reload the base embeddings after fusion")
    if d.freeze and not presenter:
        ed.multiselect("defense.freeze_groups", "Frozen groups", options=fields.choices(Scenario, "defense.freeze_groups"),
                       format_func=lambda g: g.replace("_", " "))
    realign = ed.toggle("defense.realign", "Realign (few-shot)" if presenter
                        else "Realign: few-shot fine-tuning of the fused model")
    if realign:
        ed.slider("defense.shots_per_class", "Shots per class", step=1)
        if not presenter:
            c1, c2, c3 = st.columns(3)
            with c1:
                ed.number("defense.realign_steps", "Steps")
            with c2:
                ed.number("defense.realign_batch_size", "Batch", help="samples per step; a step costs in proportion")
            with c3:
                ed.number("defense.realign_lr", "Learning rate", format="%.1e", step=1e-5)
            ed.select("defense.realign_precision", "Arithmetic",
                      format_func={"float32": "float32 (calibrated)",
                                   "bfloat16": "bfloat16 matmuls (mixed precision)"}.get,
                      help="float32: the calibrated default, the same numbers on every CPU. bfloat16: the "
                           "realignment's matrix products in bfloat16 with float32 weights and optimiser; about "
                           "2x faster on CPUs with bf16 units (AVX512-BF16, AMX), 2x slower on others; its "
                           "results differ by a few tenths of a point and are cached apart.")

    st.subheader("Other defenses", divider="gray")
    gaussian = scn.perturb.model in ("gaussian", "correlated")
    receiver = ed.multiselect(
        "defense.receiver", "At the receiver, before fusion" if not presenter else "Receiver denoisers",
        options=fields.choices(Scenario, "defense.receiver"), disabled=not gaussian,
        format_func={"drop": "drop the vector", "destripe": "destripe (row-periodic jamming)",
                     "spectral": "spectral shrinkage (Gavish-Donoho)", "norm": "norm calibration"}.get,
        help="Denoisers of each received task vector at its user's known noise level (docs/arena.md): drop "
             "leaves it out; destripe removes a row-periodic (rank-one) error; spectral shrinks each matrix's "
             "singular values; norm rescales each tensor to its estimated clean energy. Gaussian links only.")
    if receiver and not presenter:
        c1, c2 = st.columns(2)
        with c1:
            ed.select("defense.spectral_shrinker", "Spectral shrinker",
                      format_func={"frobenius": "Frobenius-optimal", "hard": "hard threshold"}.get)
        with c2:
            ed.number("defense.receiver_min_mse", "Only users with MSE at least", step=0.01, format="%.2f",
                      help="0: every user. 0.1: only the jammed users' vectors (the arena's gate).")
    ed.toggle("defense.shrinkage", "Shrinkage (MMSE)" if presenter else "Shrinkage: MMSE estimate from the known MSE")
    ed.slider("defense.trim_keep_fraction", "Trim: keep this fraction of the largest entries", step=0.05)
    if not presenter:
        with st.expander("A jammer that knows the defense"):
            ed.select("jammer.structure", "In time", disabled=scn.perturb.model != "gaussian", format_func={
                "white": "white (non-adaptive)", "row_periodic": "replayed every matrix row",
                "row_signed": "replayed every row, random signs"}.get,
                help="The same average power; a jammer synchronised to the uplink replays its waveform with the "
                     "transmission's row period, so its share of each error repeats on every row (docs/arena.md).")
            ed.select("jammer.allocation", "Over the parameters", disabled=scn.perturb.model != "gaussian",
                      format_func={"uniform": "the same power throughout",
                                   "skip_frozen": "silent on what the defense reloads",
                                   "under_gate": "just under the receiver's gate"}.get,
                      help="skip_frozen: no power while the embeddings R-MTLLMF reloads are sent, more elsewhere "
                           "(same average); under_gate: the strongest power that keeps every user's MSE under the "
                           "receiver's gate, so nothing is denoised.")

    st.subheader("Fusion", divider="gray")
    method = ed.select("fusion.method", "Method", format_func=lambda m: METHODS[m].title,
                       help=f"{METHODS[scn.fusion.method].title}: {METHODS[scn.fusion.method].help} "
                            f"({METHODS[scn.fusion.method].reference})")
    if method != "average":
        mode = ed.select("fusion.lambda_mode", "Lambda", format_func={
            "fixed": "fixed (set below)", "heuristic": "per-N heuristic", "validation": "best on validation data"}.get)
        if mode == "fixed":
            ed.slider("fusion.lambda", "Lambda (scaling of the merged vectors)", step=0.01)
    if not presenter:
        with st.expander("Method options and fused users"):
            for param in METHODS[method].params:  # the method's record says which knobs it has
                ed.number(f"fusion.{param.name}", param.label, step=param.step)
            ed.toggle("fusion.mse_aware", "MSE-aware fusion: weight each received vector by its estimated SNR",
                      disabled=scn.perturb.model == "digital",
                      help="The base station knows each user's MSE: each vector is weighted by its Wiener gain "
                           "SNR/(1+SNR), the SNR estimated from the vector's received power and the error model's "
                           "variance, normalised to mean 1 (fusion.mse_aware_weights). Not with the digital link.")
            ed.multiselect("fuse", "Fuse these users' vectors (empty: all)", options=scn.tasks,
                           format_func=ui.task_title, shown=list(scn.fuse or []),
                           to_value=lambda v: list(v) or None,
                           help="All users transmit (and interfere); the base station fuses only these.")

    st.subheader("Noise model", divider="gray")
    ed.select("perturb.model", "MSE to parameter error", format_func={
        "gaussian": "Gaussian, independent per user", "correlated": "Gaussian, correlated across users",
        "digital": "digital: quantised, 64-QAM, bit errors",
        "coded": "coded: quantised, 5G LDPC on QAM (Sionna)"}.get)
    if scn.perturb.model in ("digital", "coded"):
        ed.select("perturb.bits_per_param", "Bits per parameter")
        if scn.perturb.model == "coded":
            c1, c2 = st.columns(2)
            with c1:
                ed.select("perturb.code_rate", "LDPC code rate")
            with c2:
                ed.select("perturb.qam_bits", "Bits per QAM symbol")
            ed.select("perturb.coded_errors", "A failed codeword", format_func={
                "codeword": "arrives with its errors (no HARQ)", "erasure": "is detected and erased (CRC)",
                "independent": "(older model) bits flip one by one"}.get,
                help="LDPC decoding fails whole codewords. Without HARQ the receiver takes a failed codeword's "
                     "bits as they are; with a CRC it can erase them (those parameters get no update). "
                     "Independent flips at the same mean bit-error rate spread the errors instead.")
    else:
        ed.select("perturb.scale", "Error relative to", radio=True, format_func={
            "absolute": "the raw parameter (absolute)", "per_tensor": "each tensor's power (per tensor)",
            "per_vector": "the whole vector's power (per vector)",
            "peak": "each tensor's largest value (peak)"}.get,
            help="The paper does not say. 'Absolute' with the fitted reference amplitude reproduces its "
                 "pattern; 'per tensor' and 'peak' are what a transmitter that normalises each tensor sees.")
        ed.number("perturb.symbol_gain_db", "Reference amplitude (dB)", step=1.0,
                  help="How loud each parameter is sent: the transmitter multiplies every (normalised) parameter "
                       "by this gain before it becomes a unit-power symbol, and the receiver divides it out, so "
                       "the error on a parameter has variance MSE x scale² x 10^(-dB/10). Higher: less noise. "
                       "The default is fitted to the paper (`python -m rmtllmf_core calibrate`); 0 dB is the "
                       "literal reading.")
    ed.number("perturb.repetition", "Repetition: copies of every symbol", step=1,
              help="Physical-layer protection: r copies combined at the receiver divide the error variance by r "
                   "(r times the airtime; the Resilience page compares it with coding).")
    if not presenter:
        with st.expander("Evaluation"):
            ed.number("evaluation.samples_per_task", "Test samples per task", step=50)
            ed.number("evaluation.significance", "Hypothesis test level alpha", step=0.01)
            ed.toggle("evaluation.clean_realign_control", "Control: realign the clean fusion too")

scn = ed.commit()

CONDITIONS = [Condition.FINETUNED, Condition.CLEAN, Condition.ATTACKED, Condition.DEFENDED]


@st.cache_resource(max_entries=64, show_spinner=False)
def accuracy_figure(key: str, shown: tuple[str, ...], presenter: bool, received: str, _res: Result):
    """The result's figures are built once per (result, view), for every session: building a plotly
    figure costs more than reading the result from the disk cache. Read-only once built. `received`:
    what the scenario's received fusion is called ("jammed", or "received (no jammer)")."""
    titles = _titles(_res)
    # the legend says what the scenario has: no "attacked" without a jammer
    names = {Condition.ATTACKED: f"{received}, no defense", Condition.DEFENDED: f"{received} + defense"}
    acc = plots.style(result_plots.accuracy_bars(_res, list(shown), task_titles=titles, labels=names),
                      presenter=presenter, height=420)
    acc.update_xaxes(title=None)  # the tasks name themselves
    return plots.frozen(acc)


@st.cache_resource(max_entries=64, show_spinner=False)
def cosine_figure(key: str, presenter: bool, minus_clean: bool, _res: Result):
    cos = plots.style(plots.side_by_side(result_plots.cosine_heatmaps(_res, minus_clean=minus_clean,
                                                                      task_titles=_titles(_res))),
                      presenter=presenter, height=400)
    cos.update_layout(title="Cosine similarity of the task vectors")
    return plots.frozen(cos)


@st.cache_resource(max_entries=64, show_spinner=False)
def accuracy_tables(key: str, received: str, _res: Result):
    """The result's accuracy per task: as shown (percent, the tasks' titles, the conditions named as in the
    chart; an Arrow table: st.dataframe would convert a pandas one on every run of every session) and as
    exported (fractions, the tasks' and conditions' names). Read-only once built."""
    import pyarrow as pa

    tasks, acc, titles = _res.tasks, _res.accuracy, _titles(_res)
    names = {**plots.CONDITION_LABELS, Condition.ATTACKED: f"{received}, no defense",
             Condition.DEFENDED: f"{received} + defense"}
    shown = pd.DataFrame({"task": [titles[t] for t in tasks],
                          **{f"{names.get(c, c)} (%)": [100 * acc[c][t] for t in tasks] for c in acc}})
    fractions = pd.DataFrame({"task": tasks, **{c: [acc[c][t] for t in tasks] for c in acc}})
    return pa.Table.from_pandas(shown, preserve_index=False), fractions


def _titles(res: Result) -> dict[str, str]:
    """The result's tasks by their human titles (its own zoo's: no session state in a shared cache)."""
    return {t: ui.task_title(t, res.zoo.name) for t in res.tasks}


def draw(res: Result, from_cache: bool) -> None:
    avg = res.average_normalized
    # labels follow the scenario: no "attacked" without a jammer, no "+ defense" without one
    d = scn.defense
    defended_on = d.freeze or d.realign or bool(d.receiver) or d.shrinkage or d.trim_keep_fraction < 1.0
    received = "Jammed" if scn.wireless.attack != "none" else "Received (no jammer)"
    m = st.columns(3)
    m[0].metric("Clean fusion", f"{100 * avg['clean']:.1f}%", help="average normalised accuracy (fused / individual)")
    # presenter mode: short labels and deltas (the larger text in a narrower column cut the long ones)
    m[1].metric("No defense" if presenter else f"{received}, no defense", f"{100 * avg['attacked']:.1f}%",
                delta=f"{100 * (avg['attacked'] - avg['clean']):+.1f} pts" + ("" if presenter else " vs clean"))
    if defended_on:
        m[2].metric("With defense" if presenter else f"{received} + defense", f"{100 * avg['defended']:.1f}%",
                    delta=f"{100 * (avg['defended'] - avg['attacked']):+.1f} pts"
                          + ("" if presenter else " vs no defense"))
    else:
        m[2].metric("Defense", "off", help="every defense is switched off: nothing to compare")
    wde = f"{res.wde['attacked']:.3f} / {res.wde['defended']:.3f}"
    h0 = f"{100 * res.rejection_rate['attacked']:.1f}% / {100 * res.rejection_rate['defended']:.1f}%"
    if presenter:  # the three numbers that tell the story stay big; these become one line (big, they were cut)
        st.markdown(f"WDE without / with defense **{wde}** · H0 rejection without / with defense **{h0}** · "
                    f"lambda **{res.lam:.2f}**")
    else:
        m = st.columns(3)
        m[0].metric("WDE without / with defense", wde,
                    help="weight-disentanglement error: disagreement with the individual models (clean: "
                         f"{res.wde.get('clean', float('nan')):.3f})")
        m[1].metric("H0 rejection without / with defense", h0,
                    help=f"share of test inputs where |z_u/z_d - 1| > T at alpha = {scn.evaluation.significance}")
        m[2].metric("Lambda", f"{res.lam:.2f}", help=f"fusion scaling ({scn.fusion.lambda_mode})")
    worst = max(range(len(res.users)), key=lambda q: res.users[q]["mse"])
    st.caption(f"Channel: average MSE {res.wireless['average_mse']:.3f} after the receiver; the worst user, "
               f"{ui.task_title(scn.tasks[worst])}, {res.users[worst]['mse']:.3f}"
               + (f"; airtime x{res.airtime_factor:g} per parameter" if res.airtime_factor != 1 else "") + ".")

    extra = [c for c in (Condition.ZEROSHOT, Condition.CLEAN_REALIGNED) if c in res.accuracy]
    shown = CONDITIONS + (st.pills("Also show", extra, selection_mode="multi", format_func=plots.CONDITION_LABELS.get,
                                   key="fusion.extra") or [] if extra else [])
    if not defended_on:  # the same model as the received fusion: one bar, not two
        shown = [c for c in shown if c != Condition.DEFENDED]
    fig_acc = accuracy_figure(res.key, tuple(shown), presenter, received.lower(), res)
    ui.chart(fig_acc, "chart.accuracy")
    minus_clean = st.toggle("Cosines: show received and defended minus clean", key="fusion.cos_minus_clean",
                            help="The three heatmaps often look alike: their difference from the clean cosines shows "
                                 "what the channel and the defense changed, on a scale of its own.")
    fig_cos = cosine_figure(res.key, presenter, minus_clean, res)
    ui.chart(fig_cos, "chart.cosine")
    st.caption("Defended: the vectors the defense fuses, with the frozen parts reset to the base model's.")

    table, fractions = accuracy_tables(res.key, received.lower(), res)
    frozen = " + ".join(g.replace("_", " ") for g in scn.defense.freeze_groups) if scn.defense.freeze else "nothing"
    st.caption(f"frozen: {frozen} · "
               f"{'from the result cache' if from_cache else 'computed'} · "
               f"engine {res.engine_version}, zoo {res.zoo.name} ({res.zoo.fingerprint[:8]})")
    if not presenter:
        with st.expander("Accuracy per task (table)"):
            st.dataframe(table, hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.1f") for c in table.column_names[1:]})
    ui.export("fusion", tables={"accuracy per task": fractions}, data=res.to_json,
              figures={"accuracy": fig_acc, "cosine": fig_cos})


@st.fragment
def results(scn) -> None:
    """The slow part: the engine's result (from the cache, or computed with a progress bar)."""
    try:
        res, from_cache = engine.run(scn)
    except RmtllmfError as exc:
        ed.show_error(exc)
        return
    draw(res, from_cache)


with view:
    warning = engine.channel_warning(scn.wireless)
    if warning:  # known before the (slow) result: fusing noise is the scenario's doing, not the fusion's
        st.warning(warning, icon=":material/warning:")
    results(scn)
