// The vision service's ModelLoader: turns a registry version on local disk into an OCR pipeline or an image
// classifier, by task. An OCR version holds det.onnx, rec.onnx, keys.txt and optionally cls.onnx and
// ocr.json (other file names through ocr.json); a classifier holds model.onnx, classifier.json and labels.
// Anything the engine cannot drive is FAILED_PRECONDITION with the reason.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { z } from 'zod';
import { FailedPreconditionError, throwIfAborted } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import { sessionSignature, type SessionSettings } from '../../runtime/models/onnx-session.js';
import { openSession, type SessionLike } from '../../runtime/models/session-thread.js';
import { ModelTask, type Loaded, type LocalVersion, type ModelLoader } from '../../runtime/models/types.js';
import { ClassifierEngine, classifierJsonSchema, type ClassifierBatching, type ClassifierSettings } from '../domain/classifier-engine.js';
import { dictionaryFromKeys } from '../domain/ctc.js';
import type { ImageOps } from '../domain/image.js';
import { modelSettings, ocrJsonSchema, type OcrBatching } from '../domain/ocr-config.js';
import { OcrEngine } from '../domain/ocr-engine.js';
import type { VisionModel } from '../domain/vision-model.js';
import { tensorRunner } from './onnx-runner.js';

export interface VisionLoaderOptions {
  session: SessionSettings;
  /** Worker threads per model file, a session each (0: the session runs on the event loop); each holds the weights. */
  sessionThreads: number;
  ocrBatching: OcrBatching;
  classifierBatching: ClassifierBatching;
  images: ImageOps;
  log: Logger;
}

export function visionLoader(options: VisionLoaderOptions): ModelLoader<VisionModel> {
  return async (version, signal) => {
    if (version.task === ModelTask.OCR) return loadOcr(version, options, signal);
    if (version.task === ModelTask.IMAGE_CLASSIFICATION) return loadClassifier(version, options, signal);
    throw new FailedPreconditionError(`model "${version.name}" has task ${version.task}; the vision service runs OCR and image classification models`, [], {
      reason: 'WRONG_TASK',
    });
  };
}

async function loadOcr(version: LocalVersion, options: VisionLoaderOptions, signal: AbortSignal): Promise<Loaded<VisionModel>> {
  const json = await readConfig(version, 'ocr.json', ocrJsonSchema, {});
  const det = json.detection.file;
  const rec = json.recognition.file;
  const keys = json.recognition.keys;
  requireFiles(version, [det, rec, keys]);
  const cls = hasFile(version, json.orientation.file) ? json.orientation.file : undefined;
  const dictionary = dictionaryFromKeys(await readFile(join(version.dir, keys), 'utf8'));
  const sessions: SessionLike[] = [];
  try {
    const open = async (file: string) => {
      throwIfAborted(signal);
      const s = await session(version, file, options);
      sessions.push(s.session);
      return s;
    };
    const detector = await open(det);
    const recognizer = await open(rec);
    const classifier = cls ? await open(cls) : undefined;
    const classes = sessionSignature(recognizer.session).outputs[0]?.shape[2] ?? -1;
    if (classes > 0 && classes !== dictionary.length + 1) {
      throw new FailedPreconditionError(
        `model "${version.name}" version ${version.version}: the recognizer has ${classes} classes but ${keys} gives ${dictionary.length} characters (+1 blank)`,
        [],
        { reason: 'DICTIONARY_MISMATCH' },
      );
    }
    const engine = new OcrEngine({
      name: version.name,
      version: version.version,
      detector: tensorRunner(detector.session),
      recognizer: tensorRunner(recognizer.session),
      classifier: classifier ? tensorRunner(classifier.session) : undefined,
      dictionary,
      settings: modelSettings(json),
      batching: options.ocrBatching,
      images: options.images,
    });
    return {
      model: { kind: 'ocr', engine },
      bytes: fileBytes(version, [det, rec, ...(cls ? [cls] : [])]) * Math.max(1, options.sessionThreads),
      executionProvider: detector.executionProvider,
      close: async () => {
        await engine.close();
        await releaseAll(sessions);
      },
    };
  } catch (err) {
    await releaseAll(sessions);
    throw err;
  }
}

async function loadClassifier(version: LocalVersion, options: VisionLoaderOptions, signal: AbortSignal): Promise<Loaded<VisionModel>> {
  if (!hasFile(version, 'classifier.json')) {
    throw new FailedPreconditionError(`model "${version.name}" version ${version.version} has no classifier.json describing its input`, [], { reason: 'MODEL_CONFIG_MISSING' });
  }
  const json = await readConfig(version, 'classifier.json', classifierJsonSchema, undefined);
  requireFiles(version, [json.file]);
  let labels = json.labels;
  if (!labels) {
    requireFiles(version, [json.labels_file]);
    labels = (await readFile(join(version.dir, json.labels_file), 'utf8')).split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  }
  throwIfAborted(signal);
  const s = await session(version, json.file, options);
  try {
    const sig = sessionSignature(s.session);
    const input = sig.inputs[0];
    const i = json.input;
    const expected = i.layout === 'NCHW' ? [3, i.height, i.width] : [i.height, i.width, 3];
    if (!input || input.type !== 'float32' || input.shape.length !== 4 || expected.some((d, k) => input.shape[k + 1] > 0 && input.shape[k + 1] !== d)) {
      throw new FailedPreconditionError(
        `model "${version.name}" version ${version.version}: input ${input?.name ?? '?'} is ${input?.type ?? '?'}[${input?.shape.join(',') ?? ''}], ` +
          `but classifier.json describes float32[N,${expected.join(',')}] (${i.layout})`,
        [],
        { reason: 'INPUT_MISMATCH' },
      );
    }
    const classes = sig.outputs[0]?.shape.at(-1) ?? -1;
    if (classes > 0 && classes !== labels.length) {
      throw new FailedPreconditionError(`model "${version.name}" version ${version.version}: the model has ${classes} outputs but ${labels.length} labels`, [], {
        reason: 'LABELS_MISMATCH',
      });
    }
    const settings: ClassifierSettings = {
      height: i.height,
      width: i.width,
      resize: i.resize,
      layout: i.layout,
      normalization: { scale: i.scale, mean: i.mean, std: i.std, channelOrder: i.channel_order },
      labels,
      outputIsProbability: json.output === 'probabilities',
    };
    const engine = new ClassifierEngine({
      name: version.name,
      version: version.version,
      runner: tensorRunner(s.session),
      settings,
      batching: options.classifierBatching,
      images: options.images,
    });
    return {
      model: { kind: 'classifier', engine },
      bytes: fileBytes(version, [json.file]) * Math.max(1, options.sessionThreads),
      executionProvider: s.executionProvider,
      close: async () => {
        await engine.close();
        await releaseAll([s.session]);
      },
    };
  } catch (err) {
    await releaseAll([s.session]);
    throw err;
  }
}

async function readConfig<S extends z.ZodType>(version: LocalVersion, file: string, schema: S, fallback: unknown): Promise<z.infer<S>> {
  let raw: unknown = fallback;
  if (hasFile(version, file)) {
    try {
      raw = JSON.parse(await readFile(join(version.dir, file), 'utf8'));
    } catch (err) {
      throw new FailedPreconditionError(`model "${version.name}" version ${version.version}: ${file} is not valid JSON (${String(err)})`, [], { reason: 'MODEL_CONFIG_INVALID' });
    }
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FailedPreconditionError(
      `model "${version.name}" version ${version.version}: ${file} is invalid at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
      [],
      { reason: 'MODEL_CONFIG_INVALID' },
    );
  }
  return parsed.data;
}

function hasFile(version: LocalVersion, name: string): boolean {
  return version.files.some((f) => f.name === name) || (version.files.length === 0 && existsSync(join(version.dir, name)));
}

function requireFiles(version: LocalVersion, names: string[]): void {
  const missing = names.filter((n) => !hasFile(version, n));
  if (missing.length > 0) {
    throw new FailedPreconditionError(`model "${version.name}" version ${version.version} lacks ${missing.join(', ')}`, [], { reason: 'MODEL_FILES_MISSING' });
  }
}

function fileBytes(version: LocalVersion, names: string[]): number {
  return version.files.filter((f) => names.includes(f.name)).reduce((s, f) => s + f.size, 0);
}

async function session(version: LocalVersion, file: string, options: VisionLoaderOptions) {
  try {
    return await openSession(join(version.dir, file), options.session, options.sessionThreads, options.log);
  } catch (err) {
    throw new FailedPreconditionError(`model "${version.name}" version ${version.version}: onnxruntime cannot load ${file} (${String(err).slice(0, 200)})`, [], {
      reason: 'MODEL_UNLOADABLE',
    });
  }
}

async function releaseAll(sessions: SessionLike[]): Promise<void> {
  await Promise.all(sessions.map((s) => s.release().catch(() => undefined)));
}
