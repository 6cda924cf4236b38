"""Streamlit plumbing shared by the dashboard pages: the shared model, the session's state and
inline errors. Numbers come from the other `workbench.app` modules; this module only wires widgets.

The model is loaded once per process (`st.cache_resource`) and shared by every browser session;
a session's concept, report, edit and verification result live in `st.session_state`, so two
sessions never see each other's work (edits are applied only scoped, under the model's lock).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import streamlit as st

DEFAULT_MODEL_ENV = "WORKBENCH_DASHBOARD_MODEL"
SESSION_KEYS = ("concept", "report", "edit", "edit_origin", "verify_result", "patch")


@st.cache_resource(show_spinner="Loading model (once per process)…", max_entries=2)
def _load(name: str):
    from workbench.models import load_model
    return load_model(name)


def default_model() -> str:
    return os.environ.get(DEFAULT_MODEL_ENV, "smollm2-135m")


@contextmanager
def inline_errors(what: str = ""):
    """Show any failure as a one-line st.error (never a traceback); the page goes on rendering."""
    from workbench.app.core import one_line
    from workbench.errors import is_user_error
    try:
        yield
    except Exception as exc:                              # noqa: BLE001 — shown, never a traceback
        if is_user_error(exc):                            # bad input: its one-line message
            st.error(f"{what}{': ' if what else ''}{one_line(exc)}", icon="⚠️")
        else:                                             # a bug: named by its type
            st.error(f"{what}{': ' if what else ''}{type(exc).__name__}: {one_line(exc)}", icon="🛑")


def model():
    """The session's model (shared, cached); None with an inline error when it cannot load."""
    name = st.session_state.setdefault("model_name", default_model())
    with inline_errors(f"cannot load model {name!r}"):
        return _load(name)
    return None


def set_model(name: str) -> None:
    """Switch this session to model `name`; its concept-specific state is dropped."""
    name = name.strip()
    if not name:
        raise ValueError("model: give an embedded name, a folder or a .gguf file")
    if name != st.session_state.get("model_name"):
        for key in SESSION_KEYS:
            st.session_state.pop(key, None)
    st.session_state["model_name"] = name


def sidebar() -> None:
    """Session status in the sidebar (model, concept, located kinds, edit, verification); call
    `refresh_sidebar()` after the page changed the session so the sidebar shows the new state."""
    st.session_state["_sidebar_slot"] = st.sidebar.empty()
    refresh_sidebar()


def refresh_sidebar() -> None:
    s = st.session_state
    slot = s.get("_sidebar_slot")
    if slot is None:
        return
    with slot.container():
        st.caption("This session")
        st.markdown(f"**model** `{s.get('model_name', default_model())}`")
        c = s.get("concept")
        st.markdown(f"**concept** {c.name if c else '—'}")
        r = s.get("report")
        st.markdown(f"**located** {', '.join(sorted(r.profiles)) if r else '—'}")
        e = s.get("edit")
        origin = s.get("edit_origin", "fit")
        st.markdown(f"**edit** {e.method} ({e.params_changed():,} params, {origin})" if e else "**edit** —")
        v = s.get("verify_result")
        st.markdown(f"**verified** {'forget hit %.2f → %.2f' % (v['forget']['hit_before'], v['forget']['hit_after']) if v else '—'}")


def need(key: str, message: str):
    """The session value `key`, or an info box saying what to do first (returns None)."""
    value = st.session_state.get(key)
    if value is None:
        st.info(message)
    return value


def unavailable(why: str) -> None:
    """The "not available" state of an optional view (why it cannot run here)."""
    st.info(why, icon="🚧")
