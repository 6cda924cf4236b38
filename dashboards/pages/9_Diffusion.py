"""Diffusion: erase a concept from a Stable Diffusion pipeline (UCE, RECE, text-encoder SAE clamp),
with key/value alignment charts and before/after 2-step samples."""
import importlib.util

import streamlit as st

from workbench.app import ui

st.set_page_config(page_title="Diffusion · Concept Workbench", layout="wide")
st.header("Diffusion: concept erasure")

ui.sidebar()
if any(importlib.util.find_spec(m) is None for m in ("diffusers", "open_clip")):     # the optional dependencies
    st.info("Diffusion editing is not available in this installation: install "
            "`pip install --no-deps diffusers==0.42.1 open-clip-torch==3.3.0` (the README set-up does).")
    st.stop()

from workbench.app.diffusion import METHODS, run_erasure  # noqa: E402


@st.cache_resource(show_spinner="loading the pipeline…")
def _pipeline(source: str):
    from workbench.diffusion.models import load_pipeline
    return load_pipeline(source)


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(";") if x.strip()]


with st.form("diffusion"):
    c1, c2 = st.columns(2)
    source = c1.text_input("Pipeline (tiny-sd, a diffusers folder or a hub id)", value="tiny-sd", key="dm_source")
    method = c2.selectbox("Method", METHODS, key="dm_method")
    erase = c1.text_input("Erase (';'-separated)", value="Van Gogh", key="dm_erase")
    guide = c2.text_input("Guide concept ('' = unconditional)", value="art", key="dm_guide")
    preserve = c1.text_input("Preserve (';'-separated)", value="Claude Monet; Pablo Picasso; a dog", key="dm_preserve")
    steps = c2.number_input("Sample steps", min_value=1, max_value=50, value=2, key="dm_steps")
    submitted = st.form_submit_button("Erase and verify", type="primary")

if submitted:
    try:
        model = _pipeline(source.strip())
        hyper = {"steps": 300} if method == "sae-clamp" else {}
        with st.spinner(f"fitting {method}…"):
            st.session_state["diffusion_result"] = run_erasure(
                model, method, _split(erase), guide=guide, preserve=_split(preserve), hyper=hyper, steps=int(steps))
    except Exception as exc:                    # noqa: BLE001 - shown inline, one line
        st.error(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

result = st.session_state.get("diffusion_result")
if result is None:
    st.caption("Fit an erasure to see key/value alignment, drift, weight-change rank, recovery and samples.")
else:
    r = result["report"]
    if r["method"] == "sae-clamp":
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("gate TPR", f"{r['gate']['tpr']:.2f}")
        m2.metric("gate FPR", f"{r['gate']['fpr']:.2f}")
        m3.metric("features", len(r["features"]))
        m4.metric("gated-off prompts bit-exact", str(r["gated_off_prompts_bit_exact"]))
    else:
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("K/V distance to guide", f"{r['alignment']['to_guide_after']:.3f}",
                  f"{r['alignment']['to_guide_after'] - r['alignment']['to_guide_before']:+.3f}", delta_color="inverse")
        pres = list(r["movement"]["preserved"].values())
        m2.metric("preserved drift", f"{sum(pres) / len(pres):.3f}" if pres else "n/a")
        m3.metric("max rank ΔW", r["weight_change"]["max_rank"])
        m4.metric("recovery residual", f"{r['recovery']['residual'][0]:.3f}")
    for fig in result["figures"]:
        st.plotly_chart(fig, use_container_width=True)
    im = r["image_metrics"]
    if im.get("skipped"):
        st.caption(im["reason"])
    else:
        st.dataframe([{"prompt": p, "CLIP score before": im["clip_score_prompt"]["before"][i],
                       "after": im["clip_score_prompt"]["after"][i],
                       "concept score before": im["clip_score_concept"]["before"][i],
                       "after ": im["clip_score_concept"]["after"][i]} for i, p in enumerate(im["prompts"])])
    with st.expander("report (JSON)"):
        st.json({k: v for k, v in r.items() if k not in ("alignment", "weight_change")}, expanded=False)
