"""Logit lens (nostalgebraist, 2020): decode each layer's residual stream through the final
norm and unembedding to see from which layer on the model "knows" the next token."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LensRow:
    layer: int
    top_tokens: list[str]
    top_probs: list[float]
    answer_prob: float | None = None
    answer_rank: int | None = None


@dataclass
class LogitLens:
    prompt: str
    answer: str | None
    rows: list[LensRow] = field(default_factory=list)

    def first_layer_top1(self) -> int | None:
        """First layer from which the answer is the top-1 token at every later layer."""
        if self.answer is None:
            return None
        first = None
        for row in self.rows:
            if row.answer_rank == 1:
                first = row.layer if first is None else first
            else:
                first = None
        return first

    def table(self) -> str:
        head = f"{'layer':>5}  {'answer p':>8} {'rank':>6}  top tokens"
        lines = [f"logit lens: {self.prompt!r}" + (f"  (answer {self.answer!r})" if self.answer else ""), head]
        for r in self.rows:
            tops = "  ".join(f"{t!r}:{p:.2f}" for t, p in zip(r.top_tokens, r.top_probs))
            ap = f"{r.answer_prob:8.4f} {r.answer_rank:6d}" if r.answer_prob is not None else f"{'':8} {'':6}"
            lines.append(f"{r.layer:>5}  {ap}  {tops}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "answer": self.answer, "rows": [r.__dict__ for r in self.rows]}

    def figure(self):
        """Plotly heat map: layers x top-k, coloured by probability, labelled by token."""
        import plotly.graph_objects as go
        z = [r.top_probs for r in self.rows]
        text = [r.top_tokens for r in self.rows]
        fig = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", colorscale="Blues",
                                   y=[r.layer for r in self.rows], x=[f"#{i + 1}" for i in range(len(z[0]))]))
        fig.update_layout(title=f"Logit lens: {self.prompt}", yaxis_title="layer", xaxis_title="rank")
        return fig


@torch.no_grad()
def logit_lens(model, prompt: str, k: int = 5, answer: str | None = None, remote: bool | str = False) -> LogitLens:
    """Decode the last position's hook_resid_post at every layer. `answer`'s first token is tracked.

    `remote`: capture the residual streams with one nnsight trace instead of the hf hooks (True:
    on NDIF, "local": nnsight's local dry run of the remote path; docs/remote.md); the decoding
    (final norm + unembedding) runs here either way.
    """
    if remote:
        from workbench.models.backends import nnsight_run_with_cache
        _, cache = nnsight_run_with_cache(model, prompt, remote=remote)
    else:
        _, cache = model.run_with_cache(prompt)
    answer_id = None
    if answer is not None:
        ids = model.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"answer {answer!r} has no tokens")
        answer_id = ids[0]
    lens = LogitLens(prompt=prompt, answer=answer)
    resid = torch.stack([cache[f"blocks.{L}.hook_resid_post"][0, -1] for L in range(model.n_layers)])
    probs = model.unembed(resid.float() if resid.dtype != torch.float32 else resid).float().softmax(-1)
    top = probs.topk(k, dim=-1)
    for layer in range(model.n_layers):
        row = LensRow(layer, [model.tokenizer.decode([int(i)]) for i in top.indices[layer]],
                      [round(float(p), 4) for p in top.values[layer]])
        if answer_id is not None:
            p = probs[layer, answer_id]
            row.answer_prob = float(p)
            row.answer_rank = int((probs[layer] > p).sum()) + 1
        lens.rows.append(row)
    return lens
