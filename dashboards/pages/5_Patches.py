"""Patches: export this session's edit, upload / inspect a patch, apply it with fingerprint checks, revert."""
import pandas as pd
import streamlit as st

from workbench.app import verify as dv
from workbench.app import ui

st.set_page_config(page_title="Patches · Concept Workbench", layout="wide")
st.header("Patches")
ui.sidebar()
model = ui.model()

st.subheader("Export")
edit = st.session_state.get("edit")
if edit is None or model is None:
    st.info("No edit in this session yet: fit one on the Edit page, or apply a patch below.")
else:
    with ui.inline_errors("export"):
        data = dv.patch_bytes(edit, model, st.session_state.get("verify_result"))
        st.download_button(f"Download {edit.method} patch (.zip, {len(data) / 1024:.1f} KB)", data,
                           file_name=dv.download_name(f"{edit.concept or 'concept'}.{edit.method}", ".patch.zip"),
                           mime="application/zip", key="download_patch")
        st.caption("manifest.json + tensors.safetensors; the verification result is included when run")

st.subheader("Inspect and apply")
upload = st.file_uploader("Patch (.zip)", type=["zip"], key="patch_upload")
path = st.text_input("…or a patch path on this machine (folder or .zip)", key="patch_path")
if st.button("Read patch"):
    with ui.inline_errors("patch"):
        if upload is not None:
            patch, text = dv.read_patch_upload(upload.getvalue(), upload.name)
        elif path.strip():
            from workbench.patches import inspect_patch, load_patch
            patch = load_patch(path.strip(), max_bytes=dv.PATCH_MAX_BYTES)
            text = inspect_patch(path.strip(), max_bytes=dv.PATCH_MAX_BYTES)
        else:
            raise ValueError("upload a patch or give its path")
        st.session_state["patch"] = (patch, text)

loaded = st.session_state.get("patch")
if loaded is not None:
    patch, text = loaded
    st.code(text, language=None)
    st.dataframe(pd.DataFrame([{"tensor": n, "base fingerprint (sha256)": fp}
                               for n, fp in patch.manifest["fingerprints"].items()]), hide_index=True)
    with st.expander("manifest.json"):
        st.json(patch.manifest, expanded=False)
    a1, a2 = st.columns(2)
    if a1.button("Apply to the loaded model", type="primary", disabled=model is None):
        with ui.inline_errors("apply refused"):
            dv.check_patch(patch, model)
            st.session_state.update(edit=patch.new_edit(), edit_origin="patch")
            st.session_state.pop("verify_result", None)
            ui.refresh_sidebar()
            st.success(f"applied to this session: every fingerprint matches {patch.base_model}")
    if a2.button("Revert", disabled=st.session_state.get("edit_origin") != "patch"):
        st.session_state.pop("edit", None)
        st.session_state.pop("edit_origin", None)
        ui.refresh_sidebar()
        intact = dv.base_intact(model, patch)
        (st.success if intact else st.error)(
            "reverted: every touched tensor matches its base fingerprint" if intact
            else "the model's touched tensors do not match the base fingerprints")
