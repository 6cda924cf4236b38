"""Verify: the verification report (forget / retain / perplexity / per form, parametric trace,
relearning, routing drift) and the forget-versus-retain trade-off across methods."""
import streamlit as st

from workbench.app import verify as dv
from workbench.app import ui

st.set_page_config(page_title="Verify · Concept Workbench", layout="wide")
st.header("Verify")
ui.sidebar()
model = ui.model()
concept = st.session_state.get("concept")
edit = st.session_state.get("edit")

if model is not None and concept is not None and edit is not None:
    st.caption(f"{edit.method} edit of {concept.name!r} on `{model.model_id}`")
    c = st.columns(5)
    utility_tokens = c[0].number_input("held-out tokens (perplexity, KL; 0 skips)", 0, 16384, 1024, step=512,
                                       key="v_tokens")
    parametric = c[1].checkbox("parametric trace", True, key="v_parametric")
    leakage = c[2].checkbox("logit-lens leakage", True, key="v_leakage")
    relearn = c[3].checkbox("relearning attack (slow)", False, key="v_relearn")
    fluency = c[4].checkbox("fluency (slow)", False, key="v_fluency")
    if st.button("Run verification", type="primary"):
        with ui.inline_errors("verify"), st.spinner("verifying: probes, utility, trace, leakage…"):
            st.session_state["verify_result"] = dv.verify(model, concept, edit, utility_tokens=int(utility_tokens),
                                                          relearn=relearn, fluency=fluency, parametric=parametric,
                                                          leakage=leakage)
            ui.refresh_sidebar()
else:
    st.info("Fit an edit on the Edit page (or apply a patch on the Patches page) to verify it.")

result = st.session_state.get("verify_result")
if result is not None:
    from workbench.verify.bench import compact_table
    cards = dv.headline(result)
    cols = st.columns(len(cards))
    for col, (label, (before, after)) in zip(cols, cards.items()):
        col.metric(label, f"{after:.3f}", delta=f"{after - before:+.3f} from {before:.3f}", delta_color="off")
    st.code(compact_table(result), language=None)
    figs = dv.verify_figures(result)
    for key in ("forget_retain_hit", "forget_retain_prob", "perplexity", "by_form", "retain_by_form",
                "parametric_trace", "relearning"):
        if key in figs:
            st.plotly_chart(figs[key], width="stretch", key=f"fig_{key}")
    if "relearning" not in figs:
        st.caption("relearning curve: not measured (tick 'relearning attack' and run verification)")
    st.subheader("Routing drift")
    if "routing_drift" in figs:
        st.plotly_chart(figs["routing_drift"], width="stretch")
    elif not model or not model.info.n_experts:
        ui.unavailable("routing drift: not available for this model (dense, no router)")
    else:
        ui.unavailable("routing drift: not measured by this verification (needs the MoE verification extras)")

st.subheader("Forget versus retain across methods")
bench = st.file_uploader("Benchmark JSON (`workbench bench … --json`)", type=["json"], key="bench_upload")
docs = []
if bench is not None:
    with ui.inline_errors("benchmark"):
        docs.append(dv.read_bench(bench.getvalue(), bench.name))
if result is not None:
    docs.append({"model": model.model_id if model else "?", "workbench_version": "", "results": [result]})
if docs:
    from workbench.verify.bench import bench_figures
    merged = {"model": docs[0]["model"], "results": [r for d in docs for r in d["results"]]}
    for i, fig in enumerate(bench_figures(merged)):
        st.plotly_chart(fig, width="stretch", key=f"bench_{i}")
    from workbench.verify.bench import format_table
    st.code(format_table(merged["results"]), language=None)
else:
    st.caption("upload a benchmark JSON, or verify an edit, to see the trade-off")
