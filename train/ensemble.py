"""Many runs of AmbER2Model trained at once: R networks as stacked weights, one batched step for all of them.

Two implementations share one interface: `params` (name -> stacked tensor with its `.grad`), `forward(xa, xt,
train) -> (logits of heads A, T, AT as (R, C, B), cache)`, `backward(cache, logit_grads)` (writes `.grad`),
`predict`, `run_view` (a tensor with the run as its first axis) and `write_into` (run r's weights into a model).

* `GenericEnsemble` runs the model's own code: `torch.func.functional_call` of `AmbER2Model`, vmapped over the
  stacked weights, with autograd for the gradients. Any architecture `AmbER2Config` can express (e.g.
  `head_layers=2`) trains with no new gradient code.
* `FastEnsemble` is the paper's architecture (GMU fusion, two-layer heads) written out by hand: the first layer
  of all runs of a seed group is one matrix product over that group's batch, no input gradient is computed
  for the raw features, and the first-layer products may run in bfloat16. It is an optimisation only,
  chosen automatically for that architecture (`ProtocolConfig.ensemble`), and tests/test_protocol.py checks it
  computes what `GenericEnsemble` computes (outputs and gradients). `benchmarks/protocol.py` times one step of
  each side by side.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import Tensor

from amber2.losses import HEADS
from amber2.model import AmbER2Config, AmbER2Model, standardize
from train.config import ProtocolConfig, ProtocolData, ProtocolError


def initial_model(data: ProtocolData, cfg: ProtocolConfig, seed: int, provenance: dict | None = None) -> AmbER2Model:
    """An AmbER2Model for `data` shaped by `cfg`, with `seed`'s initial weights."""
    torch.manual_seed(seed)
    return AmbER2Model(AmbER2Config(
        audio_dim=data.audio.shape[1], text_dim=data.text.shape[1], classes=list(data.classes),
        label_space=data.label_space, hidden_dim=cfg.hidden_dim, fusion_dim=cfg.fusion_dim, dropout=cfg.dropout,
        head_layers=cfg.head_layers, audio_encoder=data.audio_encoder, text_encoder=data.text_encoder,
        provenance=provenance or {}))


def make_ensemble(models: Sequence[AmbER2Model], group_size: int, cfg: ProtocolConfig,
                  generator_seed: int) -> "FastEnsemble | GenericEnsemble":
    """The ensemble of `models` (S seed groups of `group_size` runs) that `cfg.ensemble` names."""
    kind = FastEnsemble if cfg.ensemble == "fast" else GenericEnsemble
    return kind(models, group_size, cfg.dropout, cfg.device, generator_seed=generator_seed,
                matmul_dtype=cfg.matmul_dtype)


def run_groups(n_runs: int, group_size: int) -> tuple[int, int, int]:
    """(R, P, S): the runs, the runs per seed group (they share each batch's rows), the seed groups."""
    if group_size < 1 or n_runs % group_size:
        raise ProtocolError(f"{n_runs} runs do not split into groups of {group_size}")
    return n_runs, group_size, n_runs // group_size


class GenericEnsemble:
    """R runs of any AmbER2Model as stacked parameters, trained through the model's own forward.

    Runs of one seed group see the same rows (xa of shape (S, B, D) is repeated for the P runs of each group).
    Dropout masks differ per run (`vmap(randomness="different")`) and are drawn from `generator_seed`.
    `matmul_dtype` bfloat16 runs the forward under `torch.autocast`.
    """

    def __init__(self, models: Sequence[AmbER2Model], group_size: int, dropout: float = 0.0,
                 device: str | torch.device = "cpu", generator_seed: int = 0, dtype: torch.dtype = torch.float32,
                 matmul_dtype: torch.dtype | None = None):
        self.R, self.P, self.S = run_groups(len(models), group_size)
        self.device = torch.device(device)
        self.dtype, self.low_precision = dtype, matmul_dtype not in (None, dtype)
        self.model = copy.deepcopy(models[0]).to(self.device, dtype)
        for module in self.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = dropout
        params, buffers = torch.func.stack_module_state(list(models))
        self.params = {n: t.detach().to(self.device, dtype).contiguous().requires_grad_() for n, t in params.items()}
        for t in self.params.values():
            t.grad = torch.zeros_like(t)
        self.buffers = {n: t.to(self.device, dtype) for n, t in buffers.items()}
        self._seed, self._steps = generator_seed, 0

    def _vmapped(self, train: bool) -> Callable:
        model = self.model.train(train)

        def one_run(params: dict, buffers: dict, audio: Tensor, text: Tensor) -> Tensor:
            logits = torch.func.functional_call(model, (params, buffers), (audio, text))
            return torch.stack([logits[h] for h in HEADS])          # (3, B, C)

        return one_run

    def _run(self, xa: Tensor, xt: Tensor, train: bool) -> Tensor:
        """(R, 3, B, C) logits; xa/xt are (S, B, D) per seed group or (B, D) shared by all runs."""
        per_group = xa.dim() == 3
        if per_group:
            xa, xt = xa.repeat_interleave(self.P, 0), xt.repeat_interleave(self.P, 0)
        dims = 0 if per_group else None
        fn = torch.func.vmap(self._vmapped(train), in_dims=(0, 0, dims, dims), randomness="different")
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.autocast(self.device.type, torch.bfloat16,
                                                                      enabled=self.low_precision):
            torch.manual_seed(self._seed * 1_000_003 + self._steps)
            self._steps += 1
            return fn(self.params, self.buffers, xa, xt).to(self.dtype)   # autocast's bf16 back to the weights' dtype

    def forward(self, xa: Tensor, xt: Tensor, train: bool) -> tuple[list[Tensor], dict]:
        """Logits (R, C, B) of heads A, T, AT and the cache `backward` needs."""
        with torch.enable_grad():
            out = self._run(xa, xt, train)
        return [out[:, m].transpose(1, 2) for m in range(len(HEADS))], {"out": out}

    def backward(self, cache: dict, grad_logits: Sequence[Tensor]) -> None:
        """Write into `params[name].grad` the gradient of the loss whose logit gradients are given."""
        grad_out = torch.stack([g.transpose(1, 2) for g in grad_logits], 1)
        names = list(self.params)
        grads = torch.autograd.grad(cache["out"], [self.params[n] for n in names], grad_out)
        for name, grad in zip(names, grads):
            self.params[name].grad.copy_(grad)

    @torch.no_grad()
    def predict(self, audio: Tensor, text: Tensor, rows: int = 512) -> Tensor:
        """Probabilities (R, 3, N, C) of heads A, T, AT for the same N rows under every run (eval mode)."""
        out = [torch.softmax(self._run(audio[i:i + rows], text[i:i + rows], train=False), dim=-1)
               for i in range(0, len(audio), rows)]
        return torch.cat(out, 2)

    def run_view(self, name: str, tensor: Tensor | None = None) -> Tensor:
        """A parameter (or a tensor shaped like it): the run is already its first dimension."""
        return self.params[name] if tensor is None else tensor

    def write_into(self, model: AmbER2Model, r: int, grads: bool = False) -> AmbER2Model:
        """Copy run r's weights (grads=True: its gradients, into `.grad`) into a model of the same config."""
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, t in self.params.items():
                value = (t.grad if grads else t)[r].detach().cpu().to(named[name].dtype)
                if grads:
                    named[name].grad = value.clone()
                else:
                    named[name].copy_(value)
        return model


def _model_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The nn.Linear layers of the paper's AmbER2Model under stable names (the only place that knows its
    attributes); a model with deeper heads is refused."""
    fusion, heads = model.fusion, model.heads
    if HEADS != ("A", "T", "AT"):
        raise ProtocolError(f"FastEnsemble is written for the paper's three heads, not {HEADS}; train this table "
                            "of heads with --ensemble generic")
    if any(len(heads[h]) != 4 for h in HEADS):
        raise ProtocolError("FastEnsemble is written for the paper's two-layer heads (head_layers=1); "
                            "train other architectures with GenericEnsemble")
    return {"proj_a": fusion.audio, "proj_t": fusion.text, "gate": fusion.gate,
            **{f"{h}{i}": heads[h][j] for h in HEADS for i, j in ((1, 0), (2, 3))}}


def _input_stats(models: Sequence[torch.nn.Module], device: torch.device, dtype: torch.dtype
                 ) -> tuple[Tensor, ...] | None:
    """The models' input statistics (audio mean, std, text mean, std), one set for all runs; None when they
    are the identity (then there is nothing to apply)."""
    names = ("audio_mean", "audio_std", "text_mean", "text_std")
    sets = [tuple(getattr(m, n, None) for n in names) for m in models]
    if any(t is None for t in sets[0]):
        return None
    if any(not all(torch.equal(a, b) for a, b in zip(s, sets[0])) for s in sets[1:]):
        raise ProtocolError("FastEnsemble trains runs that read their inputs alike: the models' input "
                            "statistics differ; train them in separate ensembles or with --ensemble generic")
    audio_mean, audio_std, text_mean, text_std = sets[0]
    if not (audio_mean.any() or text_mean.any()) and bool((audio_std == 1).all()) and bool((text_std == 1).all()):
        return None
    return tuple(t.to(device, dtype) for t in sets[0])


def _grouped(op: Callable[..., Tensor], *args: Tensor, out: Tensor | None = None) -> Tensor:
    """op (torch.mm / torch.addmm) applied per leading index of 3-D args, written into one (S, ...) tensor."""
    if out is None:
        shape = (args[-2].shape[0], args[-2].shape[1], args[-1].shape[2])
        out = torch.empty(shape, dtype=args[-1].dtype, device=args[-1].device)
    for s in range(out.shape[0]):
        op(*(a[s] for a in args), out=out[s])
    return out


class FastEnsemble:
    """R runs of the paper's AmbER2Model (GMU fusion, two-layer heads) as stacked tensors: S seed groups of P
    runs (R = S * P).

    Runs of one seed group see the same training rows at every step, so the first layer of all their
    networks is one matrix product per group: rows of `w_a` stack, per run, the audio projection, the audio
    half of the gate and the first layer of head A (`w_t` likewise for text). Weights keep nn.Linear's
    (out, in) layout; activations are feature-major, (R, features, batch).

    `matmul_dtype` bfloat16 runs the first-layer products (forward and weight gradient) in bfloat16 on
    bfloat16 copies of the weights and features; their results are added to the float32 biases and gradients,
    so everything else, the weights and the optimizer included, stays in the parameters' dtype.
    """

    PARAM_NAMES = ("w_a", "b_a", "w_t", "b_t", "w_at1", "b_at1", "w_out", "b_out")

    def __init__(self, models: Sequence[torch.nn.Module], group_size: int, dropout: float = 0.0,
                 device: str | torch.device = "cpu", generator_seed: int = 0, dtype: torch.dtype = torch.float32,
                 matmul_dtype: torch.dtype | None = None):
        self.R, self.P, self.S = run_groups(len(models), group_size)
        # Dropout masks come from 16-bit random integers (a quarter of a 64-bit draw each, 2.5x faster than
        # uniform floats on the CPU): a unit is dropped when its integer falls below a threshold, so the
        # dropout rate is rounded to a multiple of 1/65536 (0.1 -> 0.10000610); survivors are scaled by the
        # exact 1/keep of that rate.
        self._drop_below = int(round(dropout * 65536)) - 32768
        self.keep = 1.0 - (self._drop_below + 32768) / 65536
        self.device = torch.device(device)
        self.matmul_dtype = matmul_dtype or dtype
        layers = [_model_linears(m) for m in models]
        first = layers[0]
        self.Da = first["proj_a"].in_features
        self.Dt = first["proj_t"].in_features
        self.F = first["proj_a"].out_features
        self.H = first["A1"].out_features
        self.C = first["A2"].out_features
        if first["AT1"].in_features != self.F or first["A1"].in_features != self.Da \
                or first["T1"].in_features != self.Dt:
            raise ProtocolError("AmbER2Model layout not understood: heads A/T must read the raw audio/text "
                                "vectors and head AT the fused vector")
        self.width = 2 * self.F + self.H          # rows per run in the first-layer blocks
        with torch.no_grad():
            self.params = {name: t.to(self.device, dtype).contiguous() for name, t in self._stack(layers).items()}
        for t in self.params.values():
            t.grad = torch.empty_like(t)   # backward overwrites every element
        # low-precision copies of the first-layer weights and their gradients, allocated once: fresh buffers
        # this large come from mmap and cost a page fault per 4 KiB on every step
        self._low = {name: torch.empty_like(self.params[name], dtype=self.matmul_dtype)
                     for name in ("w_a", "w_t")} if self.matmul_dtype != dtype else {}
        self._low_grad = {name: torch.empty_like(t) for name, t in self._low.items()}
        # text blocks carry no gate bias (the gate's one bias lives in the audio block): keep it at zero
        self._text_gate_rows = torch.zeros(self.R, self.width, 1, dtype=torch.bool, device=self.device)
        self._text_gate_rows[:, self.F:2 * self.F] = True
        self._stats = _input_stats(models, self.device, dtype)
        self.generator = torch.Generator(device=self.device).manual_seed(generator_seed)
        self._check_forward(models[0])

    def _check_forward(self, model: torch.nn.Module, rows: int = 8) -> None:
        """Refuse a model whose own forward this hand-written one does not reproduce (a changed fusion or head
        keeps the layer names `_model_linears` reads, but not the maths)."""
        g = torch.Generator().manual_seed(0)
        xa = torch.randn(rows, self.Da, generator=g).to(self.device)
        xt = torch.randn(rows, self.Dt, generator=g).to(self.device)
        with torch.no_grad():
            ours = [lg[0].T.float().cpu() for lg in self.forward(xa, xt, train=False)[0]]
            probe = copy.deepcopy(model).float().eval()
            theirs = probe(xa.float().cpu(), xt.float().cpu())
        tol = 1e-4 if self.matmul_dtype == self.params["w_a"].dtype else 5e-2
        for head, got in zip(HEADS, ours):
            want = theirs[head]
            if not torch.allclose(got, want, atol=tol * (1 + want.abs().max().item()), rtol=0):
                raise ProtocolError(f"FastEnsemble does not reproduce this model's forward (head {head} differs "
                                    f"by {(got - want).abs().max().item():.3g}): it is written for the paper's "
                                    "GMU fusion and two-layer heads; train this model with --ensemble generic")

    # -- parameters ---------------------------------------------------------------------------------------
    def _stack(self, layers: list[dict[str, torch.nn.Linear]]) -> dict[str, Tensor]:
        Da = self.Da

        def block(lay, proj, gate_cols, head):
            w = torch.cat([lay[proj].weight, lay["gate"].weight[:, gate_cols], lay[head].weight], 0)
            gate_bias = lay["gate"].bias if proj == "proj_a" else torch.zeros_like(lay["gate"].bias)
            return w, torch.cat([lay[proj].bias, gate_bias, lay[head].bias])[:, None]

        a = [block(lay, "proj_a", slice(0, Da), "A1") for lay in layers]
        t = [block(lay, "proj_t", slice(Da, None), "T1") for lay in layers]
        stack = torch.stack
        return {
            "w_a": stack([w for w, _ in a]).view(self.S, self.P * self.width, Da),
            "b_a": stack([b for _, b in a]).view(self.S, self.P * self.width, 1),
            "w_t": stack([w for w, _ in t]).view(self.S, self.P * self.width, self.Dt),
            "b_t": stack([b for _, b in t]).view(self.S, self.P * self.width, 1),
            "w_at1": stack([lay["AT1"].weight for lay in layers]),
            "b_at1": stack([lay["AT1"].bias[:, None] for lay in layers]),
            "w_out": torch.stack([stack([lay[f"{h}2"].weight for lay in layers]) for h in HEADS]),
            "b_out": torch.stack([stack([lay[f"{h}2"].bias[:, None] for lay in layers]) for h in HEADS]),
        }

    def run_view(self, name: str, tensor: Tensor | None = None) -> Tensor:
        """A parameter (or a tensor shaped like it) viewed with the run as its first dimension."""
        t = self.params[name] if tensor is None else tensor
        if name == "w_out" or name == "b_out":
            return t.transpose(0, 1)
        return t.reshape(self.R, -1, t.shape[-1])

    def write_into(self, model: torch.nn.Module, r: int, grads: bool = False) -> torch.nn.Module:
        """Copy run r's weights (grads=True: its gradients, into `.grad`) into an AmbER2Model of the same
        shape; returns the model."""
        lay = _model_linears(model)
        F, w = self.F, self.width
        src = {n: (t.grad if grads else t) for n, t in self.params.items()}
        p = {name: self.run_view(name, src[name])[r].detach().cpu() for name in self.PARAM_NAMES}
        wa, ba, wt, bt = p["w_a"], p["b_a"][:, 0], p["w_t"], p["b_t"][:, 0]
        pieces = [(lay["proj_a"].weight, wa[:F]), (lay["proj_a"].bias, ba[:F]),
                  (lay["proj_t"].weight, wt[:F]), (lay["proj_t"].bias, bt[:F]),
                  (lay["gate"].weight, torch.cat([wa[F:2 * F], wt[F:2 * F]], 1)), (lay["gate"].bias, ba[F:2 * F]),
                  (lay["A1"].weight, wa[2 * F:w]), (lay["A1"].bias, ba[2 * F:w]),
                  (lay["T1"].weight, wt[2 * F:w]), (lay["T1"].bias, bt[2 * F:w]),
                  (lay["AT1"].weight, p["w_at1"]), (lay["AT1"].bias, p["b_at1"][:, 0])]
        pieces += [(lay[f"{h}2"].weight, p["w_out"][i]) for i, h in enumerate(HEADS)]
        pieces += [(lay[f"{h}2"].bias, p["b_out"][i][:, 0]) for i, h in enumerate(HEADS)]
        with torch.no_grad():
            for param, value in pieces:
                if grads:
                    param.grad = value.to(param.dtype).clone()
                else:
                    param.copy_(value)
        return model

    # -- forward / backward -------------------------------------------------------------------------------
    def forward(self, xa: Tensor, xt: Tensor, train: bool) -> tuple[list[Tensor], dict]:
        """Logits (R, C, B) of heads A, T, AT. xa (S, B, Da) / xt (S, B, Dt): each seed group's rows; or
        (B, Da) / (B, Dt): the same rows for every run. Returns (logits, cache for `backward`)."""
        p, R, F = self.params, self.R, self.F
        if self._stats is not None:     # the models' own input statistics, as AmbER2Model.forward applies them
            audio_mean, audio_std, text_mean, text_std = self._stats
            xa, xt = standardize(xa, audio_mean, audio_std), standardize(xt, text_mean, text_std)
        xa, xt = xa.to(self.matmul_dtype), xt.to(self.matmul_dtype)
        if not self._low:
            if xa.dim() == 2:   # the same rows for all runs: one broadcast product, no copies
                oa = torch.matmul(p["w_a"], xa.T).add_(p["b_a"])
                ot = torch.matmul(p["w_t"], xt.T).add_(p["b_t"])
            else:   # a loop of 2-D products per seed group measured faster than one bmm (MKL, 2 cores)
                oa = _grouped(torch.addmm, p["b_a"], p["w_a"], xa.transpose(1, 2))
                ot = _grouped(torch.addmm, p["b_t"], p["w_t"], xt.transpose(1, 2))
        else:   # low-precision products; adding the bias promotes them back to the parameters' dtype
            outs = []
            for w, b, x in (("w_a", "b_a", xa), ("w_t", "b_t", xt)):
                low = self._low[w].copy_(p[w])
                prod = torch.matmul(low, x.T) if x.dim() == 2 else _grouped(torch.mm, low, x.transpose(1, 2))
                outs.append(torch.add(p[b], prod))
            oa, ot = outs
        B = oa.shape[-1]
        out_a, out_t = oa.view(R, self.width, B), ot.view(R, self.width, B)
        ha = out_a[:, :F].tanh_()
        ht = out_t[:, :F].tanh_()
        g = out_a[:, F:2 * F].add_(out_t[:, F:2 * F]).sigmoid_()
        diff = ha - ht
        h = torch.addcmul(ht, g, diff)                       # g * ha + (1 - g) * ht
        z_at = torch.baddbmm(p["b_at1"], p["w_at1"], h)
        hidden = [out_a[:, 2 * F:].relu_(), out_t[:, 2 * F:].relu_(), z_at.relu_()]
        scale = 1.0
        if train and self.keep < 1.0:
            # the 1/keep rescaling of the survivors is applied to the small (R, C, B) product instead
            scale = 1.0 / self.keep
            n = 3 * R * self.H * B
            bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=self.device)
            bits = bits.random_(-2**63, None, generator=self.generator).view(torch.int16)[:n]
            drop = bits.view(3, R, self.H, B) < self._drop_below
            for m, r in enumerate(hidden):
                r.masked_fill_(drop[m], 0.0)
        logits = [torch.baddbmm(p["b_out"][m], p["w_out"][m], hidden[m], alpha=scale) for m in range(3)]
        cache = {"xa": xa, "xt": xt, "ha": ha, "ht": ht, "g": g, "diff": diff, "h": h, "hidden": hidden,
                 "scale": scale, "B": B}
        return logits, cache

    def backward(self, cache: dict, grad_logits: Sequence[Tensor]) -> None:
        """Write into `params[name].grad` the gradient of the loss whose logit gradients are given."""
        p, R, F, B = self.params, self.R, self.F, cache["B"]
        aten = torch.ops.aten    # fused activation derivatives (one pass each, as autograd uses them)
        grads = {name: t.grad for name, t in p.items()}
        like = dict(device=self.device, dtype=p["w_a"].dtype)
        doa = torch.empty(R, self.width, B, **like)
        dot = torch.empty(R, self.width, B, **like)
        dz_at = torch.empty(R, self.H, B, **like)
        targets = [doa[:, 2 * F:], dot[:, 2 * F:], dz_at]   # dL/d(pre-activation) of each head's layer 1
        for m, (r, gl) in enumerate(zip(cache["hidden"], grad_logits)):
            gl = gl * cache["scale"] if cache["scale"] != 1.0 else gl     # logits = scale * W2 r + b2
            torch.bmm(gl, r.transpose(1, 2), out=grads["w_out"][m])
            torch.sum(grad_logits[m], dim=2, keepdim=True, out=grads["b_out"][m])
            dr = torch.bmm(p["w_out"][m].transpose(1, 2), gl)
            # r is ReLU then dropout: the gradient passes where r > 0
            aten.threshold_backward.grad_input(dr, r, 0, grad_input=targets[m])
        torch.bmm(dz_at, cache["h"].transpose(1, 2), out=grads["w_at1"])
        torch.sum(dz_at, dim=2, keepdim=True, out=grads["b_at1"])
        dh = torch.bmm(p["w_at1"].transpose(1, 2), dz_at)
        ha, ht, g = cache["ha"], cache["ht"], cache["g"]
        # h = g * ha + (1 - g) * ht, g = sigmoid(z_g): dL/dz_g = dh * (ha - ht) * g * (1 - g)
        aten.sigmoid_backward.grad_input(dh * cache["diff"], g, grad_input=doa[:, F:2 * F])
        dot[:, F:2 * F].copy_(doa[:, F:2 * F])
        dha = dh * g
        dht = dh.sub_(dha)                                   # dh * (1 - g); dh is not needed any more
        aten.tanh_backward.grad_input(dha, ha, grad_input=doa[:, :F])
        aten.tanh_backward.grad_input(dht, ht, grad_input=dot[:, :F])
        grad_a_rows, grad_t_rows = doa.view(self.S, self.P * self.width, B), dot.view(self.S, self.P * self.width, B)
        xa, xt = cache["xa"], cache["xt"]
        for d, x, name in ((grad_a_rows, xa, "w_a"), (grad_t_rows, xt, "w_t")):
            if self._low:
                d, low = d.to(self.matmul_dtype), self._low_grad[name]
                grads[name].copy_(torch.matmul(d, x, out=low) if x.dim() == 2 else _grouped(torch.mm, d, x, out=low))
            elif x.dim() == 2:
                torch.matmul(d, x, out=grads[name])
            else:
                _grouped(torch.mm, d, x, out=grads[name])
        torch.sum(grad_a_rows, dim=2, keepdim=True, out=grads["b_a"])
        torch.sum(grad_t_rows, dim=2, keepdim=True, out=grads["b_t"])
        grads["b_t"].view(R, self.width, 1).masked_fill_(self._text_gate_rows, 0.0)

    @torch.no_grad()
    def predict(self, audio: Tensor, text: Tensor, rows: int = 512) -> Tensor:
        """Probabilities (R, 3, N, C) of heads A, T, AT for the same N rows under every run (eval mode)."""
        out = []
        for start in range(0, len(audio), rows):
            logits, _ = self.forward(audio[start:start + rows], text[start:start + rows], train=False)
            out.append(torch.stack([torch.softmax(lg, dim=1).transpose(1, 2) for lg in logits], 1))
        return torch.cat(out, 2)


