import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../runtime/errors.js';
import { decodeImage, resizeImage } from './sharp-images.js';

const limits = { maxBytes: 1024 * 1024, maxPixels: 1_000_000 };

async function rejection(p: Promise<unknown>): Promise<InvalidArgumentError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidArgumentError);
  return err as InvalidArgumentError;
}

describe('image decoding', () => {
  it('decodes PNG, JPEG and WebP to upright RGB, flattening transparency onto white', async () => {
    const transparent = await sharp({ create: { width: 4, height: 3, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).png().toBuffer();
    const img = await decodeImage(transparent, limits, 'image');
    expect([img.width, img.height, img.data.length]).toEqual([4, 3, 36]);
    expect([...img.data.slice(0, 3)]).toEqual([255, 255, 255]);
    for (const format of ['jpeg', 'webp'] as const) {
      const bytes = await sharp({ create: { width: 5, height: 2, channels: 3, background: '#ff0000' } })[format]().toBuffer();
      const d = await decodeImage(bytes, limits, 'image');
      expect([d.width, d.height]).toEqual([5, 2]);
      expect(d.data[0]).toBeGreaterThan(200);
    }
  });

  it('applies EXIF orientation', async () => {
    const bytes = await sharp({ create: { width: 40, height: 10, channels: 3, background: '#000' } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const img = await decodeImage(bytes, limits, 'image');
    expect([img.width, img.height]).toEqual([10, 40]);
  });

  it('rejects an image over the pixel limit from its header, naming the field', async () => {
    const bytes = await sharp({ create: { width: 2000, height: 1000, channels: 3, background: '#000' } }).png().toBuffer();
    const err = await rejection(decodeImage(bytes, limits, 'pages[2].image'));
    expect(err.violations[0].field).toBe('pages[2].image');
    expect(err.message).toContain('2000x1000 = 2000000 pixels, over the limit of 1000000');
  });

  it('rejects empty, oversized, corrupt and unsupported bytes', async () => {
    expect((await rejection(decodeImage(new Uint8Array(0), limits, 'image'))).reason).toBe('IMAGE_EMPTY');
    expect((await rejection(decodeImage(new Uint8Array(limits.maxBytes + 1), limits, 'image'))).reason).toBe('IMAGE_TOO_LARGE');
    expect((await rejection(decodeImage(Buffer.from('GIF89a not really'), limits, 'image'))).reason).toBe('IMAGE_UNREADABLE');
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#123456' } }).png().toBuffer();
    expect((await rejection(decodeImage(png.subarray(0, png.length - 30), limits, 'image'))).reason).toBe('IMAGE_CORRUPT');
    const tiff = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } }).tiff().toBuffer();
    expect((await rejection(decodeImage(tiff, limits, 'image'))).reason).toBe('IMAGE_FORMAT_UNSUPPORTED');
  });

  it('resizes to exact sizes with fill, cover and contain', async () => {
    const img = await decodeImage(await sharp({ create: { width: 30, height: 10, channels: 3, background: '#00ff00' } }).png().toBuffer(), limits, 'image');
    for (const fit of ['fill', 'cover', 'contain'] as const) {
      const r = await resizeImage(img, 8, 8, fit);
      expect([r.width, r.height, r.data.length]).toEqual([8, 8, 192]);
    }
    // contain pads with black around the green band.
    const c = await resizeImage(img, 8, 8, 'contain');
    expect([...c.data.slice(0, 3)]).toEqual([0, 0, 0]);
  });
});
