// Image decoding and scaling with sharp (libvips). Untrusted bytes are checked from their header first:
// the format must be PNG, JPEG or WebP and width x height must be within the pixel limit before a single
// pixel is decoded, so a small file that declares a huge image (a decompression bomb) costs nothing.
import sharp, { type Metadata } from 'sharp';
import { InvalidArgumentError } from '../../runtime/errors.js';
import type { ImageLimits, ImageOps, ResizeFit, RgbImage } from '../domain/image.js';

const FORMATS = new Set(['png', 'jpeg', 'webp']);

export function sharpImageOps(): ImageOps {
  return { decode: decodeImage, resize: resizeImage };
}

export async function decodeImage(bytes: Uint8Array, limits: ImageLimits, field: string): Promise<RgbImage> {
  if (bytes.length === 0) throw InvalidArgumentError.field(field, 'must not be empty', { reason: 'IMAGE_EMPTY' });
  if (bytes.length > limits.maxBytes) {
    throw InvalidArgumentError.field(field, `is ${bytes.length} bytes, over the limit of ${limits.maxBytes} bytes`, {
      reason: 'IMAGE_TOO_LARGE',
      metadata: { bytes: String(bytes.length), limit_bytes: String(limits.maxBytes) },
    });
  }
  const input = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let meta: Metadata;
  try {
    // Header only; the limit is checked below with a message that names the dimensions.
    meta = await sharp(input, { limitInputPixels: false, failOn: 'error' }).metadata();
  } catch (err) {
    throw InvalidArgumentError.field(field, `is not a readable PNG, JPEG or WebP image (${describe(err)})`, { reason: 'IMAGE_UNREADABLE' });
  }
  if (!FORMATS.has(meta.format)) {
    throw InvalidArgumentError.field(field, `has format ${meta.format}; PNG, JPEG and WebP are accepted`, { reason: 'IMAGE_FORMAT_UNSUPPORTED' });
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width <= 0 || height <= 0) {
    throw InvalidArgumentError.field(field, `is ${width}x${height} pixels; an image needs at least one pixel`, { reason: 'IMAGE_EMPTY' });
  }
  if (width * height > limits.maxPixels) {
    throw InvalidArgumentError.field(field, `is ${width}x${height} = ${width * height} pixels, over the limit of ${limits.maxPixels} pixels`, {
      reason: 'IMAGE_TOO_LARGE',
      metadata: { width: String(width), height: String(height), limit_pixels: String(limits.maxPixels) },
    });
  }
  try {
    const { data, info } = await sharp(input, { limitInputPixels: limits.maxPixels, failOn: 'error', autoOrient: true, pages: 1 })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (err) {
    throw InvalidArgumentError.field(field, `could not be decoded (${describe(err)})`, { reason: 'IMAGE_CORRUPT' });
  }
}

export async function resizeImage(image: RgbImage, width: number, height: number, fit: ResizeFit): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit, position: 'centre', background: { r: 0, g: 0, b: 0 } })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** sharp's messages are safe to show (no paths: the input is a buffer); keep the first line. */
function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.replace(/:\s*$/, '').slice(0, 200);
}
