"""Concept Workbench dashboard: explore, locate, edit, verify and export (start: `workbench dashboard`)."""
import streamlit as st

from workbench.app import ui

st.set_page_config(page_title="Concept Workbench", page_icon="🔬", layout="wide")
st.title("Concept Workbench")
st.markdown(
    "Find where a language model keeps a concept, remove or redirect it with a targeted edit, verify that it "
    "is gone (and that nothing else broke), and export the edit as a checked patch.\n\n"
    "1. **Model** — structure, sites, next-token table and logit lens\n"
    "2. **Locate** — concept vectors, residual directions, causal tracing (+ SAE, routing, weights when built)\n"
    "3. **Edit** — fit a method, compare base and edited generations, probe table before/after\n"
    "4. **Verify** — forget / retain / perplexity / per-form, parametric trace, relearning, trade-offs\n"
    "5. **Patches** — export, inspect, apply with fingerprint checks, revert")
st.caption("Edits belong to this browser session only: the shared model is changed only inside a request "
           "and restored before the next one.")
ui.sidebar()
cols = st.columns(5)
for col, (page, label) in zip(cols, [("pages/1_Model.py", "Model"), ("pages/2_Locate.py", "Locate"),
                                     ("pages/3_Edit.py", "Edit"), ("pages/4_Verify.py", "Verify"),
                                     ("pages/5_Patches.py", "Patches")]):
    col.page_link(page, label=label)
