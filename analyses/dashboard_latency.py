"""Dashboard latency: what per-session edit scoping costs, and how long each page takes to render.

The dashboard never leaves the shared model edited: each request that needs a session's edit
applies it, computes, and reverts (`workbench.app.core.edited`). This measures, side by side on the
embedded model, the scoped apply + revert of a ROCR edit against the work it wraps (one forward
pass of a probe prompt, one 16-token generation), as ratios, and the warm render time of every
page under streamlit's AppTest (the model already loaded).

    PYTHONPATH=. python analyses/dashboard_latency.py [--json out/dashboard_latency.json]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def _time(fn, repeat: int) -> float:
    fn()                                                   # warm-up
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--concept", default="Japan")
    args = p.parse_args(argv)

    from workbench.app import core, ui
    from workbench.app import edits as app_edits
    from workbench.concepts import get_concept, load_builtin
    model = ui._load("smollm2-135m")             # the same cached object the pages use
    concept = get_concept(load_builtin(), args.concept)
    edit = app_edits.fit(model, "rocr", concept)
    prompt = concept.forget[0].prompt

    def scoped():
        with core.edited(model, edit):
            pass

    def forward():
        model.forward(model.tokenize(prompt), logits_to_keep=1)

    def generate():
        model.generate(prompt, max_new_tokens=16)

    t_scope, t_fwd, t_gen = (_time(f, args.repeat) for f in (scoped, forward, generate))
    out = {"model": model.model_id, "edit": {"method": edit.method, "params_changed": edit.params_changed(),
                                             "tensors": len(edit.deltas)},
           "scoped_apply_revert_s": t_scope, "forward_s": t_fwd, "generate16_s": t_gen,
           "scope_over_forward": t_scope / t_fwd, "scope_over_generate16": t_scope / t_gen}

    from streamlit.testing.v1 import AppTest
    root = Path(__file__).resolve().parent.parent / "dashboards"
    pages = {}
    for page in ["app.py", "pages/1_Model.py", "pages/2_Locate.py", "pages/3_Edit.py", "pages/4_Verify.py",
                 "pages/5_Patches.py"]:
        def render(page=page):
            at = AppTest.from_file(str(root / page), default_timeout=600).run()
            assert not at.exception, [e.value for e in at.exception]
        pages[page] = _time(render, max(1, args.repeat // 2))
    out["page_render_s"] = pages

    print(f"ROCR edit: {out['edit']['params_changed']:,} params in {out['edit']['tensors']} tensor(s)")
    print(f"scoped apply+revert {t_scope * 1e3:8.2f} ms   forward {t_fwd * 1e3:8.2f} ms   "
          f"16-token generation {t_gen * 1e3:8.1f} ms")
    print(f"scope / forward = {out['scope_over_forward']:.3f}   scope / generation = {out['scope_over_generate16']:.4f}")
    for page, t in pages.items():
        print(f"  {page:<22} warm render {t:6.2f} s")
    if args.json:
        from workbench.paths import write_json
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
