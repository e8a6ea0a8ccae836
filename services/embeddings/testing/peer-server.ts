// The bench's peer: what a Node engineer would write instead of maas — a plain @grpc/grpc-js server with the
// same Embed contract that calls the @huggingface/transformers feature-extraction pipeline once per request,
// on the same model folder (local files only, pipeline defaults otherwise). Embed is its only RPC.
//   PEER_MODEL_ROOT=<folder> PEER_MODEL=<name> node --import tsx services/embeddings/testing/peer-server.ts
// Logs `{"msg":"peer serving","port":N}` once listening (the line cli/launch.ts waits for).
import * as grpc from '@grpc/grpc-js';
import { env, pipeline } from '@huggingface/transformers';
import { EmbeddingServiceService, type EmbedRequest, type EmbedResponse } from '../../../gen/maas/embeddings/v1/embeddings.js';

const root = process.env.PEER_MODEL_ROOT;
const name = process.env.PEER_MODEL;
if (!root || !name) throw new Error('set PEER_MODEL_ROOT and PEER_MODEL');
env.allowRemoteModels = false;
env.localModelPath = root.endsWith('/') ? root : `${root}/`;
const extractor = await pipeline('feature-extraction', name, { dtype: 'fp32' });

const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>) =>
  callback({ code: grpc.status.UNIMPLEMENTED, details: 'the peer serves Embed only' } as grpc.ServiceError, null);

const server = new grpc.Server();
server.addService(EmbeddingServiceService, {
  embed(call: grpc.ServerUnaryCall<EmbedRequest, EmbedResponse>, callback: grpc.sendUnaryData<EmbedResponse>) {
    const inputs = call.request.inputs;
    extractor(inputs, { pooling: 'mean', normalize: call.request.normalize ?? true }).then(
      (out) => {
        const data = out.data as Float32Array;
        const width = out.dims[1]!;
        callback(null, {
          embeddings: inputs.map((_, i) => ({ values: Array.from(data.subarray(i * width, (i + 1) * width)), index: i, tokens: 0, truncated: false })),
          dimensions: width,
          usage: undefined,
          model: { name, version: 0, alias: '', executionProvider: 'cpu' },
          timings: undefined,
        });
      },
      (err: unknown) => callback({ code: grpc.status.INTERNAL, details: String(err) } as grpc.ServiceError, null),
    );
  },
  embedStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'Embed only' }),
  tokenize: unimplemented,
  countTokens: unimplemented,
  listModels: unimplemented,
  getModelInfo: unimplemented,
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ msg: 'peer serving', port })}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
