#!/usr/bin/env python3
"""Step 2 of the pipeline: trains the GPT-2-architecture decoder on the token ids prepare.ts wrote.

    python3 models/gpt2-mini/train.py [--steps N] [--work DIR] [--settings FILE]

PyTorch from Debian (apt-get install python3-torch) rather than TypeScript: see docs/training.md (measured on
this 2-core machine: ~1.2 GFLOPS for a hand-tuned Float32Array matmul in Node, ~0.1 for tfjs-backend-wasm,
an order of magnitude more for torch's BLAS, and the budget is minutes).

Writes into the work folder: ckpt.pt (every `checkpointEvery` steps, resumed from when present and the
settings match), weights.bin + weights.json (float32 tensors named and laid out as Hugging Face's GPT-2 state
dict: Conv1D weights [in, out]), result.json (losses, throughput, time) and reference.json (the last-position
logits of a fixed input, so the ONNX export can be checked against this forward pass without torch).
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


class Block(nn.Module):
    def __init__(self, E, H, eps):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(E, eps=eps)
        self.c_attn = nn.Linear(E, 3 * E)
        self.attn_proj = nn.Linear(E, E)
        self.ln_2 = nn.LayerNorm(E, eps=eps)
        self.c_fc = nn.Linear(E, 4 * E)
        self.mlp_proj = nn.Linear(4 * E, E)

    def forward(self, x, mask):
        B, T, E = x.shape
        D = E // self.H
        q, k, v = self.c_attn(self.ln_1(x)).split(E, dim=2)
        q = q.view(B, T, self.H, D).transpose(1, 2)
        k = k.view(B, T, self.H, D).transpose(1, 2)
        v = v.view(B, T, self.H, D).transpose(1, 2)
        att = (q * (1.0 / math.sqrt(D))) @ k.transpose(-2, -1)
        att = att.masked_fill(~mask[:T, :T], float('-inf')).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, E)
        x = x + self.attn_proj(y)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate='tanh'))
        return x


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        E, L = cfg['n_embd'], cfg['n_layer']
        self.cfg = cfg
        self.wte = nn.Embedding(cfg['vocab_size'], E)
        self.wpe = nn.Embedding(cfg['n_positions'], E)
        self.h = nn.ModuleList([Block(E, cfg['n_head'], cfg['layer_norm_epsilon']) for _ in range(L)])
        self.ln_f = nn.LayerNorm(E, eps=cfg['layer_norm_epsilon'])
        P = cfg['n_positions']
        self.register_buffer('mask', torch.tril(torch.ones(P, P, dtype=torch.bool)), persistent=False)
        # GPT-2's initialization: normal(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer).
        for name, p in self.named_parameters():
            if name.endswith('bias'):
                nn.init.zeros_(p)
            elif 'ln_' in name:
                nn.init.ones_(p)
            elif name.endswith('proj.weight'):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x, self.mask)
        return self.ln_f(x) @ self.wte.weight.t()  # LM head tied to the token embedding, as GPT-2


def hf_state(model):
    """(name, array) in Hugging Face GPT-2 naming and layout (Conv1D weights [in, out])."""
    out = [('transformer.wte.weight', model.wte.weight), ('transformer.wpe.weight', model.wpe.weight)]
    for i, b in enumerate(model.h):
        p = f'transformer.h.{i}'
        out += [
            (f'{p}.ln_1.weight', b.ln_1.weight), (f'{p}.ln_1.bias', b.ln_1.bias),
            (f'{p}.attn.c_attn.weight', b.c_attn.weight.t()), (f'{p}.attn.c_attn.bias', b.c_attn.bias),
            (f'{p}.attn.c_proj.weight', b.attn_proj.weight.t()), (f'{p}.attn.c_proj.bias', b.attn_proj.bias),
            (f'{p}.ln_2.weight', b.ln_2.weight), (f'{p}.ln_2.bias', b.ln_2.bias),
            (f'{p}.mlp.c_fc.weight', b.c_fc.weight.t()), (f'{p}.mlp.c_fc.bias', b.c_fc.bias),
            (f'{p}.mlp.c_proj.weight', b.mlp_proj.weight.t()), (f'{p}.mlp.c_proj.bias', b.mlp_proj.bias),
        ]
    out += [('transformer.ln_f.weight', model.ln_f.weight), ('transformer.ln_f.bias', model.ln_f.bias)]
    return [(n, t.detach().contiguous().float().numpy()) for n, t in out]


def save_weights(model, work):
    tensors, offset, manifest = hf_state(model), 0, []
    with open(os.path.join(work, 'weights.bin.tmp'), 'wb') as f:
        for name, a in tensors:
            f.write(a.astype('<f4').tobytes())
            manifest.append({'name': name, 'shape': list(a.shape), 'offset': offset})
            offset += a.size
    os.replace(os.path.join(work, 'weights.bin.tmp'), os.path.join(work, 'weights.bin'))
    with open(os.path.join(work, 'weights.json'), 'w') as f:
        json.dump({'config': model.cfg, 'tensors': manifest}, f, indent=1)


@torch.no_grad()
def heldout_loss(model, ids, block, max_windows=None, per_window=None):
    """Mean cross-entropy (nats/token) over consecutive non-overlapping windows of the held-out ids
    (per_window, a list, receives each window's mean)."""
    model.eval()
    n = (len(ids) - 1) // block
    if max_windows is not None:
        n = min(n, max_windows)
    total, count = 0.0, 0
    for s in range(0, n, 8):
        rows = range(s, min(n, s + 8))
        x = torch.stack([torch.from_numpy(ids[r * block:(r + 1) * block].astype(np.int64)) for r in rows])
        y = torch.stack([torch.from_numpy(ids[r * block + 1:(r + 1) * block + 1].astype(np.int64)) for r in rows])
        logits = model(x)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction='none').view(len(rows), -1)
        total += nll.sum().item()
        if per_window is not None:
            per_window += nll.mean(dim=1).tolist()
        count += y.numel()
    model.train()
    return total / count


def lr_at(step, t, elapsed=0.0):
    """Linear warmup, then cosine decay to minLearningRate. Progress is the further along of steps and
    training time (maxMinutes), so a run on a busier machine still ends with a decayed learning rate."""
    if step < t['warmupSteps']:
        return t['learningRate'] * (step + 1) / t['warmupSteps']
    frac = min(1.0, max((step - t['warmupSteps']) / max(1, t['steps'] - t['warmupSteps']), elapsed / (60 * float(t['maxMinutes']))))
    return t['minLearningRate'] + 0.5 * (1 + math.cos(math.pi * frac)) * (t['learningRate'] - t['minLearningRate'])


def self_test():
    """On a tiny float64 model: autograd gradients agree with finite differences (gradcheck), and no
    position sees a later one (changing the last token leaves earlier logits unchanged)."""
    torch.manual_seed(0)
    cfg = {'n_layer': 2, 'n_head': 2, 'n_embd': 8, 'n_positions': 6, 'vocab_size': 11, 'layer_norm_epsilon': 1e-5}
    model = GPT(cfg).double()
    for p in model.parameters():  # away from the init's exact ones and zeros, so every path carries gradient
        p.data += 0.1 * torch.randn_like(p)
    x = torch.randint(0, 11, (2, 6))
    y = torch.randint(0, 11, (2, 6))
    params = list(model.parameters())

    model.zero_grad()
    F.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1)).backward()
    eps, worst = 1e-6, 0.0
    with torch.no_grad():
        for p in params:
            flat, grad = p.data.view(-1), p.grad.view(-1)
            for i in range(0, flat.numel(), max(1, flat.numel() // 7)):
                old = flat[i].item()
                flat[i] = old + eps
                up = F.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1)).item()
                flat[i] = old - eps
                down = F.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1)).item()
                flat[i] = old
                worst = max(worst, abs((up - down) / (2 * eps) - grad[i].item()))
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % 11
    with torch.no_grad():
        leak = (model(x)[:, :-1] - model(x2)[:, :-1]).abs().max().item()
    print(json.dumps({'maxGradientError': worst, 'causalLeak': leak}))
    assert worst < 1e-6 and leak == 0.0, (worst, leak)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--settings', default=os.path.join(HERE, 'settings.json'))
    ap.add_argument('--work', default=os.environ.get('MAAS_LM_WORK', os.path.join(REPO, '.maas', 'cache', 'gpt2-mini-train')))
    ap.add_argument('--steps', type=int, help='override train.steps (tiny runs)')
    ap.add_argument('--fresh', action='store_true', help='ignore an existing checkpoint')
    ap.add_argument('--export-only', action='store_true', help='no training: evaluate and export the checkpoint')
    ap.add_argument('--self-test', action='store_true', help='gradient and causality checks on a tiny model, then exit')
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return
    settings = json.load(open(args.settings))
    t = dict(settings['train'])
    if args.steps is not None:
        t['steps'] = args.steps
    stats = json.load(open(os.path.join(args.work, 'stats.json')))
    cfg = dict(settings['model'], vocab_size=stats['vocabSize'], eos_token_id=stats['eosId'],
               bos_token_id=stats['eosId'], layer_norm_epsilon=1e-5)
    torch.set_num_threads(int(t['threads']))
    torch.manual_seed(int(t['seed']))
    rng = np.random.default_rng(int(t['seed']))
    train_ids = np.fromfile(os.path.join(args.work, 'train.bin'), dtype='<u2')
    held_ids = np.fromfile(os.path.join(args.work, 'heldout.bin'), dtype='<u2')
    B, T = int(t['batchSize']), int(t['blockSize'])
    assert T <= cfg['n_positions']

    model = GPT(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and 'wpe' not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and 'wpe' not in n)]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': t['weightDecay']}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=t['learningRate'], betas=(t['beta1'], t['beta2']))
    ckpt_path = os.path.join(args.work, 'ckpt.pt')
    key = json.dumps({'cfg': cfg, 'train': t}, sort_keys=True)
    step, elapsed, log = 0, 0.0, []
    if os.path.exists(ckpt_path) and not args.fresh:
        ck = torch.load(ckpt_path)
        if ck['key'] == key:
            model.load_state_dict(ck['model'])
            opt.load_state_dict(ck['opt'])
            step, elapsed, log = ck['step'], ck['elapsed'], ck['log']
            rng = np.random.default_rng(int(t['seed']) + step)
            print(f'resumed at step {step} ({elapsed / 60:.1f} min trained)', flush=True)
        else:
            print('checkpoint is for other settings: starting fresh', flush=True)
    print(f'model: {n_params} parameters, {cfg}; batch {B}x{T}, {t["steps"]} steps, threads {t["threads"]}', flush=True)

    def checkpoint():
        torch.save({'key': key, 'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step, 'elapsed': elapsed, 'log': log},
                   ckpt_path + '.tmp')
        os.replace(ckpt_path + '.tmp', ckpt_path)

    model.train()
    t_run = time.time()
    tokens_run = 0
    deadline = float(t['maxMinutes']) * 60
    while step < t['steps'] and elapsed < deadline and not args.export_only:
        t0 = time.time()
        starts = rng.integers(0, len(train_ids) - T - 1, size=B)
        x = torch.from_numpy(np.stack([train_ids[s:s + T] for s in starts]).astype(np.int64))
        y = torch.from_numpy(np.stack([train_ids[s + 1:s + T + 1] for s in starts]).astype(np.int64))
        for g in opt.param_groups:
            g['lr'] = lr = lr_at(step, t, elapsed)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t['gradClip'])
        opt.step()
        step += 1
        elapsed += time.time() - t0
        tokens_run += B * T
        if step % 10 == 0 or step == 1:
            rate = tokens_run / max(1e-9, time.time() - t_run)
            print(f'step {step} loss {loss.item():.4f} lr {lr:.2e} {rate:.0f} tok/s elapsed {elapsed / 60:.1f} min', flush=True)
        if step % int(t['evalEvery']) == 0:
            hl = heldout_loss(model, held_ids, T, int(t['evalBatches']) * 8)
            log.append({'step': step, 'train_loss': loss.item(), 'heldout_loss_subset': hl, 'elapsed_s': elapsed})
            print(f'eval step {step}: held-out loss (subset) {hl:.4f}', flush=True)
        if step % int(t['checkpointEvery']) == 0:
            checkpoint()
    if not args.export_only:
        checkpoint()

    windows = []
    final = heldout_loss(model, held_ids, T, per_window=windows)
    # The unigram baseline on exactly the tokens scored above (add-one smoothed counts of the training ids).
    counts = np.bincount(train_ids, minlength=cfg['vocab_size']).astype(np.float64) + 1
    scored = held_ids[1:((len(held_ids) - 1) // T) * T + 1]
    unigram = float(-np.log(counts[scored] / counts.sum()).mean())
    ref_ids = held_ids[:24].astype(np.int64)
    with torch.no_grad():
        model.eval()
        ref_logits = model(torch.from_numpy(ref_ids)[None])[0, -1].numpy()
    save_weights(model, args.work)
    result = {
        'steps': step, 'stepsPlanned': t['steps'], 'trainMinutes': elapsed / 60, 'tokensSeen': step * B * T,
        'tokensPerSecond': step * B * T / max(1e-9, elapsed), 'parameters': n_params, 'config': cfg, 'train': t,
        'heldOutLoss': final, 'heldOutTokensScored': ((len(held_ids) - 1) // T) * T,
        'unigramHeldOutLoss': unigram, 'log': log, 'heldOutLossByWindow': windows,
        'torch': torch.__version__,
    }
    json.dump(result, open(os.path.join(args.work, 'result.json'), 'w'), indent=1)
    json.dump({'input_ids': ref_ids.tolist(), 'logits': [float(v) for v in ref_logits]},
              open(os.path.join(args.work, 'reference.json'), 'w'))
    print(f'done: {step} steps in {elapsed / 60:.1f} min; held-out loss {final:.4f} nats/token '
          f'(unigram {unigram:.4f})', flush=True)


if __name__ == '__main__':
    main()
