// Receiving a version: the header is checked first, each file is streamed to a temporary file while it is
// hashed, every size and digest is checked at the end, every ONNX file is loaded, and only then does one
// transaction publish the blobs and make the version visible. Any failure (or a crash) leaves nothing that
// a reader can see; temporary files are removed here or by the sweep at the next start.
import { DataLossError, InvalidArgumentError, MaasError, throwIfAborted } from '../../runtime/errors.js';
import { checkAlias, checkFilePath, checkName, checkSha256, checkTags, checkText } from './names.js';
import type { StagedFile } from './store.js';
import type { FileRecord, GraphSignature, Limits, Tags } from './types.js';

export interface UploadHeader {
  model: string;
  files: { name: string; size: number; sha256: string }[];
  sourceUri: string;
  parentVersion: number;
  description: string;
  tags: Tags;
  aliases: string[];
}

/** One message of an upload: the header first, then chunks of the declared files in any interleaving. */
export type UploadPart = { header: UploadHeader; chunk?: undefined } | { header?: undefined; chunk: { file: string; data: Uint8Array } };

/** A size limit of the registry was exceeded (RESOURCE_EXHAUSTED, with no retry hint: retrying will not help). */
export class SizeLimitError extends MaasError {
  constructor(message: string, metadata: Record<string, string> = {}) {
    super('overloaded', message, { reason: 'SIZE_LIMIT_EXCEEDED', metadata });
  }
}

/** Checks a header against the naming rules and limits; returns it normalized. */
export function checkHeader(header: UploadHeader, limits: Limits): UploadHeader {
  checkName('header.model', header.model);
  if (header.files.length === 0) throw InvalidArgumentError.field('header.files', 'a version needs at least one file');
  if (header.files.length > limits.maxFiles) {
    throw new SizeLimitError(`a version may have at most ${limits.maxFiles} files (MAAS_REGISTRY_MAX_FILES); this one declares ${header.files.length}`);
  }
  const names = new Set<string>();
  let total = 0;
  header.files.forEach((f, i) => {
    const field = `header.files[${i}]`;
    checkFilePath(`${field}.name`, f.name);
    if (names.has(f.name)) throw InvalidArgumentError.field(`${field}.name`, `"${f.name}" is declared twice`);
    names.add(f.name);
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw InvalidArgumentError.field(`${field}.size`, 'must be the exact size in bytes');
    if (f.size > limits.maxFileBytes) {
      throw new SizeLimitError(`file "${f.name}" is ${f.size} bytes; the largest file accepted is ${limits.maxFileBytes} bytes (MAAS_REGISTRY_MAX_FILE_BYTES)`, { file: f.name });
    }
    if (f.sha256 !== '') checkSha256(`${field}.sha256`, f.sha256);
    total += f.size;
  });
  if (total > limits.maxVersionBytes) {
    throw new SizeLimitError(`the version's files add up to ${total} bytes; the largest version accepted is ${limits.maxVersionBytes} bytes (MAAS_REGISTRY_MAX_VERSION_BYTES)`);
  }
  // `a` and `a/b` cannot both exist once the version is written out as a folder.
  for (const name of names) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (names.has(dir)) throw InvalidArgumentError.field('header.files', `"${dir}" is declared as a file and as the folder of "${name}"`);
    }
  }
  if (!Number.isSafeInteger(header.parentVersion) || header.parentVersion < 0) {
    throw InvalidArgumentError.field('header.parent_version', 'must be a version number, or 0 for none');
  }
  const aliases = [...new Set(header.aliases)];
  aliases.forEach((a, i) => checkAlias(`header.aliases[${i}]`, a));
  return {
    model: header.model,
    files: header.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
    sourceUri: checkText('header.source_uri', header.sourceUri, 2048),
    parentVersion: header.parentVersion,
    description: checkText('header.description', header.description),
    tags: checkTags('header.tags', header.tags),
    aliases,
  };
}

export interface ReceivedFiles {
  files: FileRecord[];
  signatures: GraphSignature[];
  /** Staged files by name, to publish in the commit. */
  staged: Map<string, StagedFile>;
}

/**
 * Reads the chunks after the header into staged files, then checks sizes and digests and validates the
 * ONNX files. On failure every staged file is discarded before the error propagates.
 */
export async function receiveFiles(
  header: UploadHeader,
  rest: AsyncIterator<UploadPart>,
  deps: {
    stage: () => Promise<StagedFile>;
    validateOnnx: (path: string, file: string, signal: AbortSignal) => Promise<GraphSignature>;
    signal: AbortSignal;
  },
): Promise<ReceivedFiles> {
  const declared = new Map(header.files.map((f) => [f.name, f]));
  const staged = new Map<string, StagedFile>();
  try {
    for (;;) {
      const next = await rest.next();
      if (next.done) break;
      throwIfAborted(deps.signal);
      const part = next.value;
      if (!part.chunk) throw InvalidArgumentError.field('header', 'the header was sent twice; send it once, first');
      const { file, data } = part.chunk;
      const decl = declared.get(file);
      if (!decl) throw InvalidArgumentError.field('chunk.file', `"${file.slice(0, 200)}" was not declared in the header`);
      let s = staged.get(file);
      if (!s) {
        s = await deps.stage();
        staged.set(file, s);
      }
      if (s.size + data.length > decl.size) {
        throw InvalidArgumentError.field('chunk.data', `file "${file}" is larger than its declared ${decl.size} bytes`, { metadata: { file } });
      }
      if (data.length > 0) await s.write(data);
    }
    throwIfAborted(deps.signal);

    const files: FileRecord[] = [];
    for (const decl of header.files) {
      let s = staged.get(decl.name);
      if (!s) {
        s = await deps.stage();
        staged.set(decl.name, s);
      }
      if (s.size !== decl.size) {
        throw InvalidArgumentError.field('chunk.data', `file "${decl.name}" ended after ${s.size} bytes; the header declared ${decl.size}`, { metadata: { file: decl.name } });
      }
      const { sha256 } = await s.finish();
      if (decl.sha256 !== '' && decl.sha256 !== sha256) {
        throw new DataLossError(`file "${decl.name}" arrived with sha256 ${sha256}; the header declared ${decl.sha256}`, {
          reason: 'DIGEST_MISMATCH',
          metadata: { file: decl.name, declared: decl.sha256, received: sha256 },
        });
      }
      files.push({ name: decl.name, size: decl.size, sha256 });
    }

    const signatures: GraphSignature[] = [];
    for (const [i, f] of files.entries()) {
      if (!f.name.toLowerCase().endsWith('.onnx')) continue;
      throwIfAborted(deps.signal);
      const path = (await staged.get(f.name)!.finish()).path;
      try {
        signatures.push(await deps.validateOnnx(path, f.name, deps.signal));
      } catch (err) {
        if (err instanceof MaasError && err.kind !== 'invalid_argument') throw err;
        // onnxruntime names the staging file it read; the caller knows the file by its bundle name.
        const why = (err instanceof Error ? err.message : String(err)).split(path).join(f.name);
        throw InvalidArgumentError.field(`header.files[${i}]`, `"${f.name}" is not a loadable ONNX model: ${why.slice(0, 300)}`, {
          reason: 'INVALID_ONNX',
          metadata: { file: f.name },
        });
      }
    }
    return { files, signatures, staged };
  } catch (err) {
    await Promise.all([...staged.values()].map((s) => s.discard()));
    throw err;
  }
}

