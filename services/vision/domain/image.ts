// Plain pixel types of the vision engine, and the image operations it needs from a backend (sharp).
// Pixels are 8-bit RGB, interleaved, row by row, in the upright (EXIF-oriented) image.

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes: R, G, B per pixel. */
  data: Uint8Array;
}

export interface ImageLimits {
  /** Largest accepted encoded size in bytes. */
  maxBytes: number;
  /** Largest accepted width * height, checked from the header before any pixel is decoded. */
  maxPixels: number;
}

/** How an image is fitted to a target size: stretched, scaled and centre-cropped, or scaled and padded. */
export type ResizeFit = 'fill' | 'cover' | 'contain';

export interface ImageOps {
  /**
   * Decodes PNG, JPEG or WebP bytes to upright RGB (EXIF orientation applied, transparency flattened onto
   * white). Throws InvalidArgumentError naming `field` for empty, oversized, corrupt, unsupported or
   * zero-sized input; the size limits are checked from the header before decoding.
   */
  decode(bytes: Uint8Array, limits: ImageLimits, field: string): Promise<RgbImage>;
  /** Scales an RGB image to exactly width x height. */
  resize(image: RgbImage, width: number, height: number, fit: ResizeFit): Promise<RgbImage>;
}
