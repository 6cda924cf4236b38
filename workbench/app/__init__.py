"""The dashboard's support code (`dashboards/` pages stay thin and import from here).

`core` (input checks, the per-model lock, `edited`, the Model page), `concepts` (form editor,
uploads), `evidence` (Locate page), `edits` (Edit page), `verify` (Verify and Patches pages),
`diffusion` (Diffusion page) and `ui` (the Streamlit plumbing: the only module that imports
Streamlit). Nothing is imported here, so `import workbench.app.core` stays light.
"""
