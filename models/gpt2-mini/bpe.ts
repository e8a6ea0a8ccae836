// A byte-level BPE trainer that writes a Hugging Face tokenizer.json: GPT-2's pre-tokenization (its regex over
// text mapped to GPT-2's byte alphabet), the 256 byte symbols, then merges learned from word counts, then
// `<|endoftext|>` as the last id. GPT-2's own 50,257-token vocabulary would make the embedding and the LM head
// most of a small model's cost on CPU; a few thousand merges learned from the corpus cover its words.
// Deterministic: ties between equally frequent pairs go to the lexicographically smaller pair.

export const EOS = '<|endoftext|>';

/** GPT-2's pre-tokenization pattern (the one the ByteLevel pre-tokenizer applies). */
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's byte → printable character table (bytes_to_unicode). */
export function byteAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return table;
}

/** Splits text into GPT-2 pre-tokens, each spelled in the byte alphabet. */
export function preTokenize(text: string, alphabet = byteAlphabet()): string[] {
  const enc = new TextEncoder();
  const out: string[] = [];
  for (const m of text.matchAll(GPT2_PATTERN)) {
    let s = '';
    for (const b of enc.encode(m[0])) s += alphabet[b];
    out.push(s);
  }
  return out;
}

export interface BpeResult {
  /** token → id: bytes 0..255, merges in order, then EOS. */
  vocab: Record<string, number>;
  /** "left right" in merge order. */
  merges: string[];
}

/** Learns merges until the vocabulary (bytes + merges + EOS) has `vocabSize` entries or no pair occurs twice. */
export function trainBpe(texts: Iterable<string>, vocabSize: number): BpeResult {
  const alphabet = byteAlphabet();
  const counts = new Map<string, number>();
  for (const text of texts) for (const w of preTokenize(text, alphabet)) counts.set(w, (counts.get(w) ?? 0) + 1);

  // Words as symbol arrays with their frequency; pair statistics with the words each pair occurs in.
  const words: string[][] = [];
  const freq: number[] = [];
  for (const [w, c] of [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    words.push([...w]);
    freq.push(c);
  }
  const pairCount = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const key = (a: string, b: string) => `${a} ${b}`;
  const addPairs = (i: number, sign: 1 | -1) => {
    const s = words[i]!;
    for (let j = 0; j + 1 < s.length; j++) {
      const k = key(s[j]!, s[j + 1]!);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * freq[i]!);
      if (sign > 0) {
        let set = pairWords.get(k);
        if (!set) pairWords.set(k, (set = new Set()));
        set.add(i);
      }
    }
  };
  for (let i = 0; i < words.length; i++) addPairs(i, 1);

  const vocab: Record<string, number> = {};
  alphabet.forEach((ch, b) => (vocab[ch] = b));
  let next = 256;
  const merges: string[] = [];
  while (next < vocabSize - 1) {
    let best: string | undefined;
    let bestCount = 1;
    for (const [k, c] of pairCount) {
      if (c > bestCount || (c === bestCount && best !== undefined && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best === undefined) break;
    const [a, b] = best.split(' ') as [string, string];
    const merged = a + b;
    merges.push(best);
    vocab[merged] = next++;
    for (const i of pairWords.get(best) ?? []) {
      const s = words[i]!;
      let has = false;
      for (let j = 0; j + 1 < s.length; j++) if (s[j] === a && s[j + 1] === b) has = true;
      if (!has) continue;
      addPairs(i, -1);
      const out: string[] = [];
      for (let j = 0; j < s.length; j++) {
        if (j + 1 < s.length && s[j] === a && s[j + 1] === b) {
          out.push(merged);
          j++;
        } else out.push(s[j]!);
      }
      words[i] = out;
      addPairs(i, 1);
    }
    pairWords.delete(best);
    for (const [k, c] of pairCount) if (c <= 0) pairCount.delete(k);
  }
  vocab[EOS] = next;
  return { vocab, merges };
}

/** tokenizer.json for @huggingface/tokenizers (and the Rust/Python tokenizers), GPT-2 style. */
export function tokenizerJson(bpe: BpeResult): Record<string, unknown> {
  const eosId = bpe.vocab[EOS]!;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: eosId, content: EOS, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab: bpe.vocab,
      merges: bpe.merges,
    },
  };
}

/** A plain chat template: one `<|role|>` line before each message, then `<|assistant|>` for the reply. */
export const CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/** tokenizer_config.json in the Hugging Face layout. */
export function tokenizerConfig(maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'GPT2Tokenizer',
    bos_token: EOS,
    eos_token: EOS,
    unk_token: EOS,
    add_prefix_space: false,
    model_max_length: maxLength,
    chat_template: CHAT_TEMPLATE,
  };
}
