// A corpus of malformed and hostile requests: generic ones sent to every method (empty, wrong wire types,
// invalid UTF-8, path-traversal names, negative sizes, giant strings and lists, oversize messages, huge
// metadata) and typed ones per service (NaN and infinite numbers, out-of-range sizes, decompression-bomb and
// corrupt images, traversal file names in uploads and downloads). Every case is bytes as sent on the wire.
import * as grpc from '@grpc/grpc-js';
import sharp from 'sharp';
import { EmbedRequest, EmbedStreamRequest } from '../../../gen/maas/embeddings/v1/embeddings.js';
import { GenerateRequest } from '../../../gen/maas/generation/v1/generation.js';
import {
  CreateModelRequest,
  DownloadVersionRequest,
  GetVersionRequest,
  SetAliasRequest,
  UpdateModelRequest,
  UploadVersionRequest,
  WatchModelsRequest,
} from '../../../gen/maas/registry/v1/registry.js';
import { ClassifyImageRequest, RecognizeTextRequest, RecognizeTextStreamRequest } from '../../../gen/maas/vision/v1/vision.js';

export interface HostileCase {
  name: string;
  /** /package.Service/Method, or '*' for every method. */
  method: string;
  messages: Buffer[];
  metadata?: () => grpc.Metadata;
}

const tag = (field: number, wire: number) => Buffer.from([(field << 3) | wire]);
const varint = (n: bigint) => {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
};
const bytesField = (field: number, body: Buffer) => Buffer.concat([tag(field, 2), varint(BigInt(body.length)), body]);
const INVALID_UTF8 = Buffer.from([0x61, 0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80, 0x62]);
const TRAVERSAL = ['../../../../etc/passwd', '/etc/passwd', '..\\..\\windows\\win.ini', 'a/../../b', '%2e%2e%2fetc', '\u0000evil'];

/** Cases that make sense for any method: the fields they touch may or may not exist. */
export function genericCases(): HostileCase[] {
  const f32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    return b;
  };
  const cases: HostileCase[] = [
    { name: 'empty message', method: '*', messages: [Buffer.alloc(0)] },
    { name: 'varint where strings and messages go', method: '*', messages: [Buffer.concat([1, 2, 3, 4].map((f) => Buffer.concat([tag(f, 0), varint(7n)])))] },
    { name: 'NaN and Infinity as fixed32 in every field', method: '*', messages: [Buffer.concat(Array.from({ length: 11 }, (_, i) => Buffer.concat([tag(i + 1, 5), f32(i % 2 ? NaN : Infinity)])))] },
    { name: 'invalid UTF-8 in string fields', method: '*', messages: [Buffer.concat([1, 2, 3].map((f) => bytesField(f, INVALID_UTF8)))] },
    { name: 'negative sizes (-1 as varint) in every field', method: '*', messages: [Buffer.concat(Array.from({ length: 11 }, (_, i) => Buffer.concat([tag(i + 1, 0), varint(-1n)])))] },
    { name: 'length past the end of the message', method: '*', messages: [Buffer.concat([tag(1, 2), varint(2n ** 31n), Buffer.from('abc')])] },
    { name: 'unterminated varint', method: '*', messages: [Buffer.concat([tag(1, 0), Buffer.from([0xff, 0xff, 0xff])])] },
    { name: 'a 1 MiB string in fields 1 and 2', method: '*', messages: [Buffer.concat([bytesField(1, Buffer.alloc(1 << 20, 'a')), bytesField(2, Buffer.alloc(1 << 20, 'b'))])] },
    { name: 'a list of 100k strings in field 2', method: '*', messages: [Buffer.concat(Array.from({ length: 100_000 }, () => bytesField(2, Buffer.from('ab'))))] },
    { name: 'a 20 MiB message', method: '*', messages: [bytesField(2, Buffer.alloc(20 << 20, 'z'))] },
    {
      name: 'huge metadata (a 60 KiB value and 300 keys)',
      method: '*',
      messages: [Buffer.alloc(0)],
      metadata: () => {
        const m = new grpc.Metadata();
        m.set('x-big', 'v'.repeat(60 * 1024));
        for (let i = 0; i < 300; i++) m.set(`x-k${i}`, 'v'.repeat(50));
        return m;
      },
    },
    {
      name: 'hostile metadata values (bad timeout, bad traceparent, bad authorization)',
      method: '*',
      messages: [Buffer.alloc(0)],
      metadata: () => {
        const m = new grpc.Metadata();
        m.set('traceparent', '00-zzzz-zzzz-zz');
        m.set('authorization', `Bearer ${'x'.repeat(4000)}`);
        m.set('x-maas-model', '../../etc/passwd');
        return m;
      },
    },
  ];
  for (const name of TRAVERSAL)
    cases.push({ name: `path-traversal name ${JSON.stringify(name)} in fields 1-3 and a model ref`, method: '*', messages: [Buffer.concat([1, 2, 3].map((f) => bytesField(f, Buffer.from(name)))).subarray(0), Buffer.concat([bytesField(1, bytesField(1, Buffer.from(name)))])] });
  return cases;
}

/** A PNG header that claims 30000 x 30000 pixels over a few bytes of data. */
function pngBombHeader(): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(30000, 0);
  ihdr.writeUInt32BE(30000, 4);
  ihdr[8] = 8;
  ihdr[9] = 0;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00])), chunk('IEND', Buffer.alloc(0))]);
}

/** Typed hostile requests per service. */
export async function serviceCases(): Promise<HostileCase[]> {
  const E = '/maas.embeddings.v1.EmbeddingService/';
  const G = '/maas.generation.v1.GenerationService/';
  const V = '/maas.vision.v1.VisionService/';
  const R = '/maas.registry.v1.ModelRegistryService/';
  const enc = <T>(codec: { encode(m: T): { finish(): Uint8Array }; fromPartial(o: unknown): T }, o: unknown) => Buffer.from(codec.encode(codec.fromPartial(o)).finish());
  const gen = (name: string, parameters: unknown, extra: unknown = {}): HostileCase[] =>
    ['Generate', 'GenerateStream'].map((m) => ({ name: `${m}: ${name}`, method: G + m, messages: [enc(GenerateRequest, { prompt: 'hello', parameters, ...(extra as object) })] }));
  // 48 million pixels in a small PNG: over the pixel limit, a bomb once decoded.
  const bomb = await sharp({ create: { width: 8000, height: 6000, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png({ compressionLevel: 9 }).toBuffer();
  const good = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100"><image xlink:href="file:///etc/passwd" width="100" height="100"/></svg>');
  const images: [string, Buffer][] = [
    ['a PNG header claiming 30000x30000 pixels', pngBombHeader()],
    ['a 48-megapixel PNG of 50 KB (decompression bomb)', bomb],
    ['a truncated PNG', good.subarray(0, good.length >> 1)],
    ['random bytes as an image', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff))],
    ['an SVG that references a local file', svg],
    ['no image at all', Buffer.alloc(0)],
  ];
  const cases: HostileCase[] = [
    ...gen('NaN temperature', { temperature: NaN }),
    ...gen('infinite top_p and penalties', { topP: Infinity, repetitionPenalty: -Infinity, presencePenalty: NaN, frequencyPenalty: Infinity }),
    ...gen('negative temperature', { temperature: -1 }),
    ...gen('max_new_tokens 2^32-1', { maxNewTokens: 4294967295 }),
    ...gen('top_k 2^32-1 and logprobs 2^32-1', { topK: 4294967295, logprobs: 4294967295 }),
    ...gen('10000 stop sequences', { stop: Array.from({ length: 10000 }, (_, i) => `s${i}`) }),
    ...gen('an empty stop sequence', { stop: [''] }),
    ...gen('10000 chat messages with made-up roles', {}, { prompt: '', messages: Array.from({ length: 10000 }, (_, i) => ({ role: `role${i}`, content: 'x' })) }),
    ...gen('prompt and messages both set', {}, { messages: [{ role: 'user', content: 'hi' }] }),
    ...gen('a 300k-character prompt', {}, { prompt: 'word '.repeat(60_000) }),
    ...gen('a model version that does not exist', {}, { model: { name: 'gpt2-mini', version: 2 ** 53 - 1 } }),
    { name: 'Embed: 100k inputs', method: `${E}Embed`, messages: [enc(EmbedRequest, { inputs: Array.from({ length: 100_000 }, () => 'a') })] },
    { name: 'Embed: dimensions 2^32-1', method: `${E}Embed`, messages: [enc(EmbedRequest, { inputs: ['a'], dimensions: 4294967295 })] },
    { name: 'Embed: dimensions 0', method: `${E}Embed`, messages: [enc(EmbedRequest, { inputs: ['a'], dimensions: 0 })] },
    { name: 'Embed: unknown truncation direction', method: `${E}Embed`, messages: [enc(EmbedRequest, { inputs: ['a'], truncationDirection: 99 })] },
    { name: 'Embed: an empty input', method: `${E}Embed`, messages: [enc(EmbedRequest, { inputs: [''] })] },
    { name: 'Embed: a model of another task', method: `${E}Embed`, messages: [enc(EmbedRequest, { inputs: ['a'], model: { name: 'gpt2-mini' } })] },
    { name: 'EmbedStream: 200 requests, some broken', method: `${E}EmbedStream`, messages: Array.from({ length: 200 }, (_, i) => enc(EmbedStreamRequest, { tag: String(i), request: i % 3 ? { inputs: ['ok'] } : { inputs: [] } })) },
    { name: 'EmbedStream: a message with no request', method: `${E}EmbedStream`, messages: [enc(EmbedStreamRequest, { tag: 'x' })] },
    { name: 'ClassifyImage: top_k 2^32-1', method: `${V}ClassifyImage`, messages: [enc(ClassifyImageRequest, { image: good, topK: 4294967295 })] },
    { name: 'RecognizeText: max_side_len 2^32-1, NaN confidence', method: `${V}RecognizeText`, messages: [enc(RecognizeTextRequest, { image: good, options: { maxSideLen: 4294967295, minConfidence: NaN } })] },
    { name: 'RecognizeText: an OCR request naming the classifier', method: `${V}RecognizeText`, messages: [enc(RecognizeTextRequest, { image: good, model: { name: 'color-classifier' } })] },
    { name: 'RecognizeTextStream: 50 pages of garbage', method: `${V}RecognizeTextStream`, messages: Array.from({ length: 50 }, (_, i) => enc(RecognizeTextStreamRequest, { pageId: String(i), image: Buffer.from([i]) })) },
    { name: 'CreateModel: 10000 tags', method: `${R}CreateModel`, messages: [enc(CreateModelRequest, { name: 'many-tags', task: 1, tags: Object.fromEntries(Array.from({ length: 10000 }, (_, i) => [`k${i}`, 'v'])) })] },
    { name: 'CreateModel: a 10000-character name', method: `${R}CreateModel`, messages: [enc(CreateModelRequest, { name: 'n'.repeat(10000), task: 1 })] },
    { name: 'CreateModel: an unknown task', method: `${R}CreateModel`, messages: [enc(CreateModelRequest, { name: 'unknown-task', task: 999 })] },
    { name: 'UpdateModel: an unknown update_mask path', method: `${R}UpdateModel`, messages: [enc(UpdateModelRequest, { name: 'glove-100d', updateMask: ['../name', 'task'] })] },
    { name: 'GetVersion: version 2^63', method: `${R}GetVersion`, messages: [enc(GetVersionRequest, { model: 'glove-100d', version: 2 ** 63 })] },
    { name: 'SetAlias: a version that does not exist', method: `${R}SetAlias`, messages: [enc(SetAliasRequest, { model: 'glove-100d', alias: 'x', version: 99999 })] },
    { name: 'WatchModels: revision 2^53', method: `${R}WatchModels`, messages: [enc(WatchModelsRequest, { afterRevision: 2 ** 53, models: ['../x'] })] },
    { name: 'DownloadVersion: offset past the end', method: `${R}DownloadVersion`, messages: [enc(DownloadVersionRequest, { model: 'glove-100d', version: 1, file: 'model.onnx', offset: 2 ** 50 })] },
    { name: 'UploadVersion: a chunk before any header', method: `${R}UploadVersion`, messages: [enc(UploadVersionRequest, { chunk: { file: 'model.onnx', data: Buffer.from('x') } })] },
    {
      name: 'UploadVersion: more data than the header declared',
      method: `${R}UploadVersion`,
      messages: [
        enc(UploadVersionRequest, { header: { model: 'hostile-upload', files: [{ name: 'model.onnx', size: 4, sha256: '0'.repeat(64) }] } }),
        enc(UploadVersionRequest, { chunk: { file: 'model.onnx', data: Buffer.alloc(1024) } }),
      ],
    },
    {
      name: 'UploadVersion: a header declaring 2^62 bytes',
      method: `${R}UploadVersion`,
      messages: [enc(UploadVersionRequest, { header: { model: 'hostile-upload', files: [{ name: 'model.onnx', size: 2 ** 62, sha256: '0'.repeat(64) }] } })],
    },
    {
      name: 'UploadVersion: two headers',
      method: `${R}UploadVersion`,
      messages: [0, 1].map(() => enc(UploadVersionRequest, { header: { model: 'hostile-upload', files: [{ name: 'a', size: 0, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' }] } })),
    },
  ];
  for (const [name, image] of images)
    for (const m of ['RecognizeText', 'DetectText', 'ClassifyImage']) cases.push({ name: `${m}: ${name}`, method: V + m, messages: [enc(RecognizeTextRequest, { image })] });
  for (const name of TRAVERSAL) {
    cases.push({ name: `CreateModel: name ${JSON.stringify(name)}`, method: `${R}CreateModel`, messages: [enc(CreateModelRequest, { name, task: 1 })] });
    cases.push({ name: `DownloadVersion: file ${JSON.stringify(name)}`, method: `${R}DownloadVersion`, messages: [enc(DownloadVersionRequest, { model: 'glove-100d', version: 1, file: name })] });
    cases.push({
      name: `UploadVersion: file name ${JSON.stringify(name)}`,
      method: `${R}UploadVersion`,
      messages: [
        enc(UploadVersionRequest, { header: { model: 'hostile-upload', files: [{ name, size: 3, sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' }] } }),
        enc(UploadVersionRequest, { chunk: { file: name, data: Buffer.from('abc') } }),
      ],
    });
  }
  return cases;
}
