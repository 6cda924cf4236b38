"""Locate: pick or write a concept, run location with progress, one tab per kind of evidence."""
import json

import pandas as pd
import streamlit as st

from workbench.app import concepts as app_concepts
from workbench.app import evidence
from workbench.app import ui

st.set_page_config(page_title="Locate · Concept Workbench", layout="wide")
st.header("Locate a concept")
ui.sidebar()
model = ui.model()
if model is None:
    st.stop()

# ------------------------------------------------------------------ concept
from workbench.concepts import load_builtin  # noqa: E402

builtin = {c.name: c for c in load_builtin()}
source = st.radio("Concept", ["built-in", "form editor", "concept file (JSON Lines)"], horizontal=True,
                  key="concept_source")
if source == "built-in":
    names = list(builtin)
    cur = st.session_state.get("concept")
    name = st.selectbox("Built-in concept", names, index=names.index(cur.name) if cur and cur.name in names
                        else names.index("Japan"), key="builtin_concept")
    if cur is None or cur.name != name or st.session_state.get("concept_from") != "built-in":
        st.session_state["concept"] = builtin[name]
        st.session_state["concept_from"] = "built-in"
        for key in ("report", "edit", "verify_result"):
            st.session_state.pop(key, None)
        ui.refresh_sidebar()
elif source == "form editor":
    seed = st.session_state.get("concept") or builtin["Japan"]
    forget_rows, retain_rows = app_concepts.concept_rows(seed)
    with st.form("concept_form"):
        f1, f2, f3 = st.columns(3)
        name = f1.text_input("name", value=seed.name, key="form_name")
        subject = f2.text_input("subject (as it appears in prompts)", value=seed.subject, key="form_subject")
        redirect = f3.text_input("redirect_to (optional)", value=seed.redirect_to or "", key="form_redirect")
        st.caption("answers: comma-separated; form: completion, question, cloze, mcq, chat, paraphrase, …")
        forget = st.data_editor(pd.DataFrame(forget_rows), num_rows="dynamic", key="form_forget", width="stretch")
        retain = st.data_editor(pd.DataFrame(retain_rows), num_rows="dynamic", key="form_retain", width="stretch")
        if st.form_submit_button("Use this concept"):
            with ui.inline_errors("concept"):
                concept = app_concepts.concept_from_form(name, subject, redirect, forget.to_dict("records"),
                                                         retain.to_dict("records"), model=model)
                st.session_state.update(concept=concept, concept_from="form")
                for key in ("report", "edit", "verify_result"):
                    st.session_state.pop(key, None)
                ui.refresh_sidebar()
                st.success(f"concept {concept.name!r}: {len(concept.forget)} forget, {len(concept.retain)} retain probes")
else:
    upload = st.file_uploader("Concept file (.jsonl)", type=["jsonl", "json", "txt"], key="concept_upload")
    text = st.text_area("…or paste JSON Lines", height=120, key="concept_text",
                        placeholder='{"name": "…", "subject": "…", "forget": [...], "retain": [...]}')
    if st.button("Read concepts"):
        with ui.inline_errors("concept file"):
            data = upload.getvalue() if upload is not None else text
            label = upload.name if upload is not None else "pasted concept file"
            st.session_state["file_concepts"] = {c.name: c for c in app_concepts.parse_concept_text(data, label, model=model)}
    pool = st.session_state.get("file_concepts")
    if pool:
        name = st.selectbox("Concept from the file", list(pool), key="file_concept")
        if st.button("Use this concept"):
            st.session_state.update(concept=pool[name], concept_from="file")
            for key in ("report", "edit", "verify_result"):
                st.session_state.pop(key, None)
            ui.refresh_sidebar()

concept = st.session_state.get("concept")
if concept is None:
    st.stop()
with st.expander(f"Concept {concept.name!r}: subject {concept.subject!r}, redirect to {concept.redirect_to!r}, "
                 f"{len(concept.forget)} forget / {len(concept.retain)} retain probes"):
    st.code(json.dumps(concept.to_dict(), indent=1, ensure_ascii=False), language="json")

# ------------------------------------------------------------------ run
st.subheader("Run location")
offered = evidence.locate_kinds(model)
cols = st.columns(len(offered))
defaults = evidence.default_locate_kinds(model)
chosen = [k for col, (k, label) in zip(cols, offered.items()) if col.checkbox(label, value=k in defaults,
                                                                                key=f"kind_{k}")]
o1, o2, o3 = st.columns(3)
trace_probes = o1.number_input("causal-trace probes", 1, 5, 1, key="trace_probes")
validate_top = o2.number_input("concept vectors validated causally", 1, 32, 6, key="validate_top")
sae_folder = None
if "sae" in chosen:
    saes = [str(p) for p in evidence.available_saes(model)]
    sae_folder = o3.selectbox("SAE", saes, key="sae_pick") if saes else None
    typed = o3.text_input("…or an SAE folder", key="sae_path")
    sae_folder = typed.strip() or sae_folder
if st.button("Run location", type="primary"):
    bar = st.progress(0.0, text="starting")
    def step(i, n, kind):
        bar.progress(i / n, text=f"{offered.get(kind, kind)} ({i + 1}/{n})" if kind else "done")
    with ui.inline_errors("locate"):
        st.session_state["report"] = evidence.run_locate(model, concept, chosen, trace_probes=int(trace_probes),
                                                   validate_top=int(validate_top), on_step=step, sae=sae_folder)
        for key in ("edit", "verify_result"):
            st.session_state.pop(key, None)
        ui.refresh_sidebar()

report = st.session_state.get("report")
if report is None:
    st.stop()

# ------------------------------------------------------------------ evidence
status = evidence.optional_evidence_status(model)
tabs = st.tabs(["Report", "Concept vectors", "Residual directions", "Causal trace", "SAE features", "MoE routing",
                "Weight attribution"])
with tabs[0]:
    st.markdown(f"**LocalizationReport** for {report.concept!r} in `{report.model}` — timings (s): "
                f"{report.meta.get('timings')}")
    for fig in report.figures()[:1]:
        st.plotly_chart(fig, width="stretch")
    st.dataframe(pd.DataFrame([{"kind": k, "best layer": report.best_layer(k), "score": max(v)}
                               for k, v in report.profiles.items()]), hide_index=True)
    st.markdown(f"agreement between kinds (Spearman over layers): `{report.agreement()}`")
    st.download_button("Download report (JSON)", json.dumps(report.to_dict(), indent=1),
                       file_name=f"{concept.name}.localization.json", mime="application/json")
with tabs[1]:
    rows = evidence.concept_vector_rows(report)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.info("no concept-vector evidence in this report (tick 'concept vectors' and run location)")
with tabs[2]:
    if evidence.direction_rows(report):
        st.plotly_chart(evidence.direction_figure(report), width="stretch")
        st.dataframe(pd.DataFrame(evidence.direction_rows(report)), hide_index=True)
    else:
        st.info("no residual-direction evidence in this report (tick 'residual directions' and run location)")
with tabs[3]:
    figs = evidence.trace_figures(report)
    for fig in figs:
        st.plotly_chart(fig, width="stretch")
    if not figs:
        st.info("no causal trace in this report (tick 'causal tracing' and run location)")
for tab, key, title in ((tabs[4], "sae", "SAE features"), (tabs[5], "routing", "Expert routing: layer × expert"),
                        (tabs[6], "weights", "Weight attribution: layer × module")):
    with tab:
        kind = evidence.OPTIONAL_EVIDENCE[key][1]
        rows = evidence.evidence_rows(report, kind)
        if status[key] is not None:
            ui.unavailable(status[key])
        elif not rows:
            ui.unavailable(f"no {kind} evidence in this report (tick '{evidence.OPTIONAL_LABELS[key]}' and run location)")
        else:
            fig = evidence.evidence_heatmap(report, kind, title)
            if fig is not None:
                st.plotly_chart(fig, width="stretch", key=f"heat_{key}")
            if key == "routing":                          # concept (forget) vs control (retain) routing
                h1, h2 = st.columns(2)
                for col, (value, label) in zip((h1, h2), (("affinity_forget", "concept (forget probes)"),
                                                           ("affinity_retain", "control (retain probes)"))):
                    fig = evidence.evidence_heatmap(report, kind, f"Router affinity: {label}", value=value)
                    if fig is not None:
                        col.plotly_chart(fig, width="stretch", key=f"heat_{value}")
            if key == "sae":
                for feat in evidence.sae_snippets(report):
                    st.markdown(f"**{feat['feature']}** score {feat['score']:.3f}, causal effect "
                                f"{feat['causal effect']}; promotes `{feat['promotes'][:6]}`, "
                                f"suppresses `{feat['suppresses'][:6]}`")
                    for snippet in feat["snippets"]:
                        st.html(snippet)
            st.dataframe(pd.DataFrame(rows), hide_index=True)
        if report.meta.get("unavailable", {}).get(key):
            st.caption(report.meta["unavailable"][key])
