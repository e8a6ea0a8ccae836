// What the model host holds for the vision service: an OCR pipeline or an image classifier, one per loaded
// registry version.
import type { ClassifierEngine } from './classifier-engine.js';
import type { OcrEngine } from './ocr-engine.js';

export type VisionModel = { kind: 'ocr'; engine: OcrEngine } | { kind: 'classifier'; engine: ClassifierEngine };
