#!/usr/bin/env python3
"""Trains hyrax's bundled demo model: a small Olmo Hybrid (Gated DeltaNet : attention = 3 : 1) on the King James
Bible, with its own byte-level BPE tokenizer in the format of Olmo's dolma2 tokenizer.

    python3 tools/extract_kjv.py .data/kjv.txt            # here: Debian's bible-kjv text
    python3 tools/train_demo.py --text .data/kjv.txt --out models/kjv-hybrid --greedy tests/fixtures/kjv_hybrid_greedy.json

Runs where torch + transformers 5.17 are (the GPU machine; CPU works, slowly). Writes a standard Hugging Face
folder: config.json, generation_config.json, model.safetensors (bf16), tokenizer.json, tokenizer_config.json and a
model card README.md with the training data, steps, device time and held-out perplexity; and, for hyrax's test,
transformers' greedy continuations of a few prompts (float32 math on the saved bf16 weights).

Positions: RoPE (theta 10000) on the attention layers, not NoPE as in the released Olmo Hybrid 7B, because
transformers 5.17 reloads a config with "rope_parameters": null as RoPE theta=10000, so a NoPE demo would not
reload correctly in the reference implementation; at a 512-token training context RoPE is also the cheap way to
give the two attention layers position information.
"""
import argparse
import json
import math
import os
import random
import time

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import OlmoHybridConfig, OlmoHybridForCausalLM, PreTrainedTokenizerFast

CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
          r"\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
PROMPTS = ["In the beginning", "And God said", "The LORD is my shepherd", "Blessed are the", "For God so loved",
           "Genesis 2\n"]


def train_tokenizer(text, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CL100K), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text.splitlines(keepends=True), trainer)
    return tok


def split_chapters(text):
    """Chapters (heading + verses), every 20th held out."""
    chapters = [c.strip("\n") + "\n" for c in text.split("\n\n") if c.strip()]
    train = [c for i, c in enumerate(chapters) if i % 20 != 7]
    held = [c for i, c in enumerate(chapters) if i % 20 == 7]
    return train, held


def batches(stream, seq, batch, gen):
    n = (len(stream) - 1) // seq
    while True:
        idx = torch.randint(0, len(stream) - seq - 1, (batch,), generator=gen)
        x = torch.stack([stream[i:i + seq + 1] for i in idx.tolist()])
        yield x


@torch.no_grad()
def perplexity(model, stream, seq, device):
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(stream) - seq - 1, seq):
        x = stream[i:i + seq + 1].unsqueeze(0).to(device)
        logits = model(x[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), x[:, 1:].reshape(-1),
                                                 reduction="sum")
        total += float(loss)
        count += seq
    model.train()
    return math.exp(total / count)


def record_greedy(model_dir, path):
    """transformers' greedy continuations of PROMPTS on the saved folder, loaded with float32 math: what a
    transformers user gets, and what hyrax's demo test compares against."""
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    eos, pad = cfg["eos_token_id"], cfg["pad_token_id"]
    reference = OlmoHybridForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    greedy = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        out = reference.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False, eos_token_id=eos,
                                 pad_token_id=pad, output_scores=True, return_dict_in_generate=True)
        cont = out.sequences[0, len(ids):].tolist()
        margins = [float(torch.topk(s[0].float(), 2).values.diff().abs()) for s in out.scores]
        greedy.append({"prompt": prompt, "prompt_ids": ids, "continuation": cont, "min_margin": min(margins),
                       "text": tok.decode(cont)})
        print(f"{prompt!r} -> {tok.decode(cont)!r} (min margin {min(margins):.4f})")
    json.dump({"model": os.path.basename(os.path.normpath(model_dir)), "transformers": transformers.__version__,
               "torch": torch.__version__, "greedy": greedy}, open(path, "w"), indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text")
    ap.add_argument("--greedy-only", action="store_true", help="only record greedy continuations of --out")
    ap.add_argument("--out", required=True)
    ap.add_argument("--greedy", required=True, help="where to write transformers' greedy continuations")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=2000, help="most optimizer steps")
    ap.add_argument("--budget", type=float, default=0, help="seconds of training: fewer steps if they would not fit")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.greedy_only:
        record_greedy(args.out, args.greedy)
        return
    t_start = time.time()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    text = open(args.text, encoding="utf-8").read()
    train_ch, held_ch = split_chapters(text)
    tok = train_tokenizer("".join(train_ch), args.vocab)
    eos = tok.token_to_id("<|endoftext|>")
    pad = tok.token_to_id("<|pad|>")

    def encode(chapters):
        ids = []
        for c in chapters:
            ids.extend(tok.encode(c).ids)
            ids.append(eos)
        return torch.tensor(ids, dtype=torch.long)

    train_stream, held_stream = encode(train_ch), encode(held_ch)
    print(f"tokenizer: {tok.get_vocab_size()} tokens; train {len(train_stream)} tokens, held-out {len(held_stream)}")

    config = OlmoHybridConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=256, intermediate_size=512, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=4, linear_num_key_heads=4, linear_num_value_heads=4,
        linear_key_head_dim=48, linear_value_head_dim=96, max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=eos, pad_token_id=pad, bos_token_id=None, initializer_range=0.02,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = OlmoHybridForCausalLM(config).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, layers {''.join('A' if t == 'full_attention' else 'L' for t in config.layer_types)}")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    warmup = max(1, min(100, args.steps // 20))

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    gen = torch.Generator().manual_seed(args.seed)
    it = batches(train_stream, args.seq, args.batch, gen)
    model.train()
    t_train = time.time()
    log = []
    step = 0
    while step < args.steps:
        if step == 20 and args.budget > 0:
            # Fit the run into the time budget, from the speed of the first 20 steps.
            per_step = (time.time() - t_train) / 20
            args.steps = max(40, min(args.steps, int(args.budget / per_step)))
            print(f"{per_step * 1000:.0f} ms/step: training {args.steps} steps", flush=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = next(it).to(args.device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=args.device == "cuda"):
            logits = model(x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d} loss {loss.item():.4f} lr {lr_at(step):.2e} {time.time() - t_train:.0f}s", flush=True)
            log.append((step, loss.item()))
        step += 1
    train_seconds = time.time() - t_train

    # Save bf16 weights; everything below measures and records the saved model (float32 math on bf16 weights).
    with torch.no_grad():  # bf16-round the parameters (float32 buffers and math stay)
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    model.eval()
    ppl = perplexity(model, held_stream.to(args.device), args.seq, args.device)
    print(f"held-out perplexity {ppl:.2f} (per token, {len(held_stream)} tokens)")
    os.makedirs(args.out, exist_ok=True)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.to(torch.bfloat16).save_pretrained(args.out)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   model_max_length=4096, clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(args.out)
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        p = os.path.join(args.out, extra)
        if os.path.exists(p) and extra == "special_tokens_map.json":
            os.remove(p)

    record_greedy(args.out, args.greedy)

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    card = f"""# kjv-hybrid: hyrax's demo model

A small **Olmo Hybrid** (`OlmoHybridForCausalLM`, transformers {transformers.__version__}) trained from scratch on
the King James Bible, so that hyrax can show real generated text with no download. It is a language model of
17th-century scripture, not an assistant: it continues text; it was not trained to chat.

| | |
|---|---|
| architecture | {config.num_hidden_layers} layers `{''.join('A' if t == 'full_attention' else 'L' for t in config.layer_types)}` (L = Gated DeltaNet, A = attention; 3 : 1), hidden {config.hidden_size}, MLP {config.intermediate_size} (SwiGLU) |
| attention | {config.num_attention_heads} heads x {config.hidden_size // config.num_attention_heads}, RoPE theta 10000 (why not NoPE: see below) |
| Gated DeltaNet | {config.linear_num_key_heads} key heads x {config.linear_key_head_dim}, {config.linear_num_value_heads} value heads x {config.linear_value_head_dim}, conv 4, beta in [0, 2] |
| parameters | {n_params:,} ({n_params / 1e6:.2f} M), tied embeddings, stored as bf16 |
| tokenizer | byte-level BPE, {tok.get_vocab_size()} tokens, trained on the training chapters with HF tokenizers; same format as Olmo's dolma2 tokenizer (Split with the cl100k regex + ByteLevel) |
| training data | King James Version (public domain), Debian package `bible-kjv-text`, extracted by `tools/extract_kjv.py`; every 20th chapter held out; {len(train_stream):,} training tokens |
| training | {args.steps} steps x {args.batch} sequences x {args.seq} tokens, AdamW lr {args.lr} (warmup {warmup}, cosine to 10%), bf16 autocast, seed {args.seed} |
| device | {device_name}, {train_seconds:.0f} s of training, {time.time() - t_start:.0f} s in all (`tools/train_demo.py`) |
| held-out perplexity | **{ppl:.2f}** per token on {len(held_stream):,} held-out tokens (bf16 weights, float32 math) |

Why RoPE and not NoPE like the released Olmo Hybrid 7B: transformers 5.17 reloads a config whose
`rope_parameters` is null as RoPE with theta 10000, so a NoPE checkpoint would not reload correctly in the
reference implementation; and for a 512-token training context RoPE is the cheap way to give the attention layers
positions.

Made by `python3 tools/train_demo.py --text kjv.txt --out models/kjv-hybrid --greedy tests/fixtures/kjv_hybrid_greedy.json`
on {time.strftime('%Y-%m-%d')}.
"""
    open(os.path.join(args.out, "README.md"), "w").write(card)
    print(f"wrote {args.out} in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
