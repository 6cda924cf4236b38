"""Edit: choose a method and its hyper-parameters, fit, compare base and edited generations and probes."""
import pandas as pd
import streamlit as st

from workbench.app import core
from workbench.app import edits as app_edits
from workbench.app import ui
from workbench.edits import methods

st.set_page_config(page_title="Edit · Concept Workbench", layout="wide")
st.header("Edit")
ui.sidebar()
model = ui.model()
concept = ui.need("concept", "Choose a concept on the Locate page first.")
if model is None or concept is None:
    st.stop()
report = st.session_state.get("report")
st.caption(f"concept {concept.name!r} → redirect to {concept.redirect_to!r}; "
           + ("using this session's LocalizationReport" if report else "no LocalizationReport yet (methods that "
              "need one locate what they need themselves)"))

names = methods(model)                    # only the methods for this kind of model (no uce/rece)
method = st.selectbox("Method", names, index=names.index("rocr") if "rocr" in names else 0, key="method")
fields = []
with ui.inline_errors(f"method {method}"):
    fields = app_edits.method_fields(method)
with st.form(f"hyper_{method}"):
    st.markdown("**Hyper-parameters** (defaults shown)")
    cols = st.columns(3)
    values = {}
    for i, f in enumerate(fields):
        col = cols[i % 3]
        label = f"{f['name']} ({f['type']})"
        if f["type"] == "bool":
            values[f["name"]] = col.checkbox(label, value=bool(f["default"]), key=f"hp_{method}_{f['name']}")
        else:
            values[f["name"]] = col.text_input(label, value="None" if f["default"] is None else str(f["default"]),
                                               key=f"hp_{method}_{f['name']}")
    go = st.form_submit_button("Fit edit", type="primary")
if go:
    with ui.inline_errors(f"{method}"):
        hyper = app_edits.coerce_hyper(method, values)
        with st.status(f"Fitting {method} on {concept.name!r}…", expanded=False) as box:
            edit = app_edits.fit(model, method, concept, report, hyper)
            box.update(label=f"{method}: fitted in {edit.edit_seconds:.1f} s", state="complete")
        st.session_state.update(edit=edit, edit_origin="fitted here")
        st.session_state.pop("verify_result", None)
        st.session_state.pop("probe_rows", None)
        ui.refresh_sidebar()

edit = st.session_state.get("edit")
if edit is None:
    st.stop()
summary = app_edits.edit_summary(edit)
m1, m2, m3, m4 = st.columns(4)
m1.metric("method", summary["method"])
m2.metric("params changed", f"{summary['params changed']:,}")
m3.metric("tensors", summary["tensors"])
m4.metric("fit seconds", summary["seconds"] if summary["seconds"] is not None else "—")
st.caption(f"edit fitted: {summary['params changed']:,} parameters changed in {summary['tensors']} tensor(s), "
           f"delta kinds {', '.join(summary['delta kinds'])}; hyper {summary['hyper']}")

st.subheader("Base versus edited")
prompt = st.text_area("Prompt", value=concept.forget[0].prompt, key="edit_prompt")
n_new = st.slider("new tokens", 1, core.MAX_NEW_TOKENS, 16, key="edit_new_tokens")
with ui.inline_errors("generation"):
    memo = (prompt, int(n_new), id(edit))
    if st.session_state.get("pair_key") != memo:           # reruns of this page reuse the last generation
        st.session_state["pair"] = core.generate_pair(model, prompt, edit, max_new_tokens=int(n_new))
        st.session_state["pair_key"] = memo
    pair = st.session_state["pair"]
    g1, g2 = st.columns(2)
    g1.markdown("**base**")
    g1.code(prompt + pair["base"], language=None)
    g2.markdown("**edited**")
    g2.code(prompt + pair["edited"], language=None)

st.subheader("Probes before / after")
if st.button("Score the concept's probes"):
    with ui.inline_errors("probes"), st.spinner("scoring probes on the base and the edited model…"):
        st.session_state["probe_rows"] = app_edits.probe_table(model, concept, edit)
rows = st.session_state.get("probe_rows")
if rows:
    df = pd.DataFrame(rows)
    s1, s2 = st.columns(2)
    for col, part in ((s1, "forget"), (s2, "retain")):
        sub = df[df["set"] == part]
        col.metric(f"{part} hit", f"{sub['hit after'].mean():.2f}", delta=f"{sub['hit after'].mean() - sub['hit before'].mean():+.2f}")
    st.dataframe(df, hide_index=True)
