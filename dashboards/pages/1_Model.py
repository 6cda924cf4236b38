"""Model: pick a model; structure, sites, parameter counts; next-token table and logit lens."""
import pandas as pd
import streamlit as st

from workbench.app import core
from workbench.app import ui

st.set_page_config(page_title="Model · Concept Workbench", layout="wide")
st.header("Model")
ui.sidebar()

choices = core.model_choices()
current = st.session_state.get("model_name", ui.default_model())
c1, c2 = st.columns([2, 3])
pick = c1.selectbox("Embedded or built model", choices, index=choices.index(current) if current in choices else 0)
folder = c2.text_input("…or a local HF folder / .gguf file", value="" if current in choices else current,
                       placeholder="/path/to/checkpoint")
if st.button("Load model"):
    with ui.inline_errors("model"):
        ui.set_model(folder or pick)
        st.rerun()

model = ui.model()
if model is not None:
    summary = core.model_summary(model)
    st.subheader(repr(model))
    t1, t2, t3 = st.tabs(["Structure", "Parameters", "Sites"])
    t1.dataframe(pd.DataFrame(summary["info"].items(), columns=["field", "value"]).astype(str), hide_index=True)
    t2.dataframe(pd.DataFrame(summary["parameters"], columns=["group", "parameters"]), hide_index=True)
    t2.metric("total parameters", f"{summary['info']['n_params']:,}")
    t3.dataframe(pd.DataFrame(summary["sites"].items(), columns=["site kind", "count"]), hide_index=True)
    t3.caption(f"{summary['n_sites']} sites; a single value vector is blocks.L.mlp.W_out[i] "
               f"(i < {summary['info']['d_mlp']})")

    st.subheader("Prompt")
    prompt = st.text_area("Prompt", value="The Eiffel Tower is located in the city of", key="model_prompt")
    a1, a2, a3 = st.columns(3)
    answer = a1.text_input("Track answer (optional)", value=" Paris", key="model_answer")
    k = a2.number_input("top k", 1, 20, 5)
    use_edit = a3.checkbox("with this session's edit", value=False, disabled=st.session_state.get("edit") is None)
    edit = st.session_state.get("edit") if use_edit else None
    with ui.inline_errors("prompt"):
        rows = core.next_token_table(model, prompt, k=int(k) * 2, edit=edit)
        st.markdown("**Next token**")
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        lens = core.lens(model, prompt, k=int(k), answer=answer, edit=edit)
        if answer:
            first = lens.first_layer_top1()
            st.caption(f"answer {answer!r} is top-1 from layer {first} on" if first is not None
                       else f"answer {answer!r} never settles as top-1")
        st.plotly_chart(lens.figure(), width="stretch")
