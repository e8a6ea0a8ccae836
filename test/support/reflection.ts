// A server reflection client (grpc.reflection.v1), as grpcurl uses it: lists the services a server exposes.
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const require = createRequire(import.meta.url);
const protoPath = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');
const pkg = grpc.loadPackageDefinition(loadSync(protoPath, { keepCase: true })) as unknown as {
  grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
};

export async function listServices(address: string): Promise<string[]> {
  const client = new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const call = client.ServerReflectionInfo() as grpc.ClientDuplexStream<unknown, { list_services_response?: { service: { name: string }[] }; error_response?: { error_message: string } }>;
      call.on('data', (res) => {
        if (res.error_response) reject(new Error(res.error_response.error_message));
        else resolve((res.list_services_response?.service ?? []).map((s: { name: string }) => s.name).sort());
        call.end();
      });
      call.on('error', reject);
      call.write({ list_services: '' });
    });
  } finally {
    client.close();
  }
}

/** Asks for the file that defines a symbol; resolves with the file names returned. */
export async function fileContainingSymbol(address: string, symbol: string): Promise<string[]> {
  const client = new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const call = client.ServerReflectionInfo() as grpc.ClientDuplexStream<unknown, { file_descriptor_response?: { file_descriptor_proto: Buffer[] }; error_response?: { error_message: string } }>;
      call.on('data', (res) => {
        if (res.error_response) reject(new Error(res.error_response.error_message));
        else resolve((res.file_descriptor_response?.file_descriptor_proto ?? []).map((b: Buffer) => b.toString('latin1')));
        call.end();
      });
      call.on('error', reject);
      call.write({ file_containing_symbol: symbol });
    });
  } finally {
    client.close();
  }
}
