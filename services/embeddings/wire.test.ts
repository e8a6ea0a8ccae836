import { describe, expect, it } from 'vitest';
import { EmbedResponse, EmbedStreamResponse } from '../../gen/maas/embeddings/v1/embeddings.js';
import { EmbeddingServiceDefinition, embedResponseBytes, embedStreamResponseBytes } from './wire.js';

function response(seed: number, inputs: number, dimensions: number): EmbedResponse {
  let a = seed;
  const next = () => ((a = (a * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  return EmbedResponse.fromPartial({
    embeddings: Array.from({ length: inputs }, (_, i) => ({
      values: Float32Array.from({ length: dimensions }, next) as unknown as number[],
      index: i,
      tokens: i % 3 === 0 ? 0 : 7 + i,
      truncated: i % 2 === 1,
    })),
    dimensions,
    usage: { inputTokens: 99 },
    model: { name: 'glove-100d', version: 3 },
    timings: { queueMs: 0.25, inferenceMs: 1.5, totalMs: 2 },
  });
}

describe('embedding response encoding', () => {
  it('writes exactly the bytes of the generated encoder, for Float32Array and number[] vectors alike', () => {
    for (const [inputs, dimensions] of [[0, 0], [1, 100], [32, 100], [3, 768], [2, 0]] as const) {
      const m = response(inputs * 1000 + dimensions, inputs, dimensions);
      const generated = EmbedResponse.encode({ ...m, embeddings: m.embeddings.map((e) => ({ ...e, values: Array.from(e.values) })) }).finish();
      expect(Buffer.from(embedResponseBytes(m))).toEqual(Buffer.from(generated));
      const asArrays = { ...m, embeddings: m.embeddings.map((e) => ({ ...e, values: Array.from(e.values) })) };
      expect(Buffer.from(embedResponseBytes(asArrays))).toEqual(Buffer.from(generated));
    }
  });

  it('keeps a vector that is a view into a larger buffer to its own values', () => {
    const big = Float32Array.from({ length: 300 }, (_, i) => i);
    const m = EmbedResponse.fromPartial({ embeddings: [{ values: big.subarray(100, 200) as unknown as number[], index: 0 }], dimensions: 100 });
    expect(EmbedResponse.decode(embedResponseBytes(m)).embeddings[0]!.values).toEqual(Array.from({ length: 100 }, (_, i) => 100 + i));
  });

  it('encodes stream responses with a result or an error like the generated encoder, and round-trips them', () => {
    const ok = EmbedStreamResponse.fromPartial({ tag: 'page-7', response: response(5, 4, 16) });
    const failed = EmbedStreamResponse.fromPartial({ tag: 'page-8', error: { code: 3, message: 'inputs[0] is empty', details: [] } });
    for (const m of [ok, failed, EmbedStreamResponse.fromPartial({ response: response(1, 1, 8) })]) {
      const bytes = embedStreamResponseBytes(m);
      expect(Buffer.from(bytes)).toEqual(Buffer.from(EmbedStreamResponse.encode(m).finish()));
      expect(EmbedStreamResponse.decode(bytes)).toEqual(EmbedStreamResponse.decode(EmbedStreamResponse.encode(m).finish()));
    }
  });

  it('serves the definition with the fast serializers and the generated ones everywhere else', () => {
    const m = response(9, 2, 4);
    expect(EmbedResponse.decode(EmbeddingServiceDefinition.embed.responseSerialize(m))).toEqual(EmbedResponse.decode(EmbedResponse.encode(m).finish()));
    expect(EmbeddingServiceDefinition.embed.path).toBe('/maas.embeddings.v1.EmbeddingService/Embed');
    expect(EmbeddingServiceDefinition.tokenize).toBeDefined();
  });

  it('gives each response its own bytes, of exactly its length, after small, large and huge answers', () => {
    const serialize = EmbeddingServiceDefinition.embed.responseSerialize;
    const messages = [response(1, 32, 100), response(2, 1, 4), response(3, 3, 100_000), response(4, 2, 8), response(5, 32, 100)];
    const buffers = messages.map((m) => serialize(m));
    messages.forEach((m, i) => expect(buffers[i]).toEqual(Buffer.from(EmbedResponse.encode(m).finish())));
  });
});
