// Step 1 of the pipeline: the corpus, the tokenizer and the token ids.
//   npx tsx models/gpt2-mini/prepare.ts
// Reads the King James Bible from Debian's bible-kjv-text (through its `bible` program, package bible-kjv),
// one document per chapter; every Nth chapter is held out (never trained on, neither by the tokenizer nor by
// the model). Trains the byte-level BPE on the training chapters, writes tokenizer.json and
// tokenizer_config.json into the model folder, the token ids as uint16 files into the work folder
// (train.bin, heldout.bin: each chapter followed by <|endoftext|>), and the unigram baseline into stats.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { EOS, tokenizerConfig, tokenizerJson, trainBpe } from './bpe.js';
import { isMain, MODEL_DIR, readSettings, WORK_DIR } from './paths.js';

export interface Chapter {
  book: string;
  chapter: number;
  text: string;
}

/** Parses `bible -f` output ("Ge1:1 In the beginning …", one verse a line) into chapters, verses one per line. */
export function parseBible(dump: string): Chapter[] {
  const chapters: Chapter[] = [];
  let current: { book: string; chapter: number; verses: string[] } | undefined;
  for (const line of dump.split('\n')) {
    const m = /^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$/.exec(line.trim());
    if (!m) continue;
    const [, book, ch, , text] = m as unknown as [string, string, string, string, string];
    if (!current || current.book !== book || current.chapter !== Number(ch)) {
      if (current) chapters.push({ book: current.book, chapter: current.chapter, text: current.verses.join('\n') });
      current = { book, chapter: Number(ch), verses: [] };
    }
    current.verses.push(text.trim());
  }
  if (current) chapters.push({ book: current.book, chapter: current.chapter, text: current.verses.join('\n') });
  return chapters;
}

/** Mean negative log-likelihood (nats per token) of `heldOut` under add-one smoothed unigram counts of `train`. */
export function unigramLoss(train: Uint16Array, heldOut: Uint16Array, vocabSize: number): number {
  const counts = new Float64Array(vocabSize).fill(1);
  for (const t of train) counts[t]! += 1;
  const total = train.length + vocabSize;
  let nll = 0;
  for (const t of heldOut) nll -= Math.log(counts[t]! / total);
  return nll / heldOut.length;
}

function encodeAll(tokenizer: Tokenizer, docs: string[], eosId: number): Uint16Array {
  const ids: number[] = [];
  for (const d of docs) {
    for (const id of tokenizer.encode(d).ids) ids.push(id);
    ids.push(eosId);
  }
  return Uint16Array.from(ids);
}

async function main(): Promise<void> {
  const settings = readSettings();
  const { command, heldOutEveryNthChapter: every, heldOutOffset: offset } = settings.corpus;
  let dump: string;
  try {
    dump = execFileSync(command[0]!, command.slice(1), { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, COLUMNS: '100000' } });
  } catch (err) {
    throw new Error(`cannot run ${command.join(' ')}: install the corpus with "apt-get install bible-kjv" (${String(err)})`);
  }
  const chapters = parseBible(dump);
  const train = chapters.filter((_, i) => i % every !== offset);
  const heldOut = chapters.filter((_, i) => i % every === offset);
  console.log(`corpus: ${chapters.length} chapters, ${train.length} for training, ${heldOut.length} held out (${heldOut.map((c) => `${c.book}${c.chapter}`).slice(0, 8).join(', ')}, …)`);

  const t0 = performance.now();
  const bpe = trainBpe(train.map((c) => c.text), settings.tokenizer.vocabSize);
  console.log(`tokenizer: ${Object.keys(bpe.vocab).length} tokens (${bpe.merges.length} merges) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tokJson = tokenizerJson(bpe);
  const tokConfig = tokenizerConfig(settings.model.n_positions);
  mkdirSync(MODEL_DIR, { recursive: true });
  writeFileSync(join(MODEL_DIR, 'tokenizer.json'), `${JSON.stringify(tokJson)}\n`);
  writeFileSync(join(MODEL_DIR, 'tokenizer_config.json'), `${JSON.stringify(tokConfig, null, 1)}\n`);

  const tokenizer = new Tokenizer(tokJson, tokConfig);
  const eosId = bpe.vocab[EOS]!;
  const trainIds = encodeAll(tokenizer, train.map((c) => c.text), eosId);
  const heldIds = encodeAll(tokenizer, heldOut.map((c) => c.text), eosId);
  mkdirSync(WORK_DIR, { recursive: true });
  writeFileSync(join(WORK_DIR, 'train.bin'), trainIds);
  writeFileSync(join(WORK_DIR, 'heldout.bin'), heldIds);
  writeFileSync(join(WORK_DIR, 'heldout.txt'), heldOut.map((c) => c.text).join(`\n${EOS}\n`));
  const vocabSize = Object.keys(bpe.vocab).length;
  const stats = {
    chapters: chapters.length,
    trainChapters: train.length,
    heldOutChapters: heldOut.length,
    heldOutNames: heldOut.map((c) => `${c.book}${c.chapter}`),
    trainChars: train.reduce((n, c) => n + c.text.length, 0),
    heldOutChars: heldOut.reduce((n, c) => n + c.text.length, 0),
    trainTokens: trainIds.length,
    heldOutTokens: heldIds.length,
    vocabSize,
    eosId,
    unigramHeldOutLoss: unigramLoss(trainIds, heldIds, vocabSize),
  };
  writeFileSync(join(WORK_DIR, 'stats.json'), `${JSON.stringify(stats, null, 1)}\n`);
  console.log(`tokens: ${stats.trainTokens} train, ${stats.heldOutTokens} held out; unigram held-out loss ${stats.unigramHeldOutLoss.toFixed(4)} nats/token`);
}

if (isMain(import.meta.url)) await main();
