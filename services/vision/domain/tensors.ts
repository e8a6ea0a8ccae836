// Pixels to model input: scale, subtract the mean, divide by the standard deviation, reorder the channels
// (PaddleOCR's models were trained on OpenCV's BGR) and lay the values out planar (NCHW) or interleaved
// (NHWC), writing into a batch tensor with padding. Per-channel lookup tables keep it to one read and one
// write per value.

export interface Normalization {
  /** Pixel values (0 to 255) are multiplied by this first (usually 1/255). */
  scale: number;
  /** Per-channel mean, in the model's channel order. */
  mean: [number, number, number];
  /** Per-channel standard deviation, in the model's channel order. */
  std: [number, number, number];
  channelOrder: 'RGB' | 'BGR';
}

/** Lookup tables: value of model channel c for an 8-bit pixel value, plus which RGB channel feeds it. */
export interface Normalizer {
  tables: [Float32Array, Float32Array, Float32Array];
  /** For model channel c, the index (0 R, 1 G, 2 B) of the source channel. */
  source: [number, number, number];
}

export function normalizer(n: Normalization): Normalizer {
  const tables = [0, 1, 2].map((c) => {
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = (v * n.scale - n.mean[c]) / n.std[c];
    return t;
  }) as [Float32Array, Float32Array, Float32Array];
  return { tables, source: n.channelOrder === 'BGR' ? [2, 1, 0] : [0, 1, 2] };
}

/**
 * Writes an RGB image into item `index` of a planar batch tensor [N, 3, height, width]; the image goes top-left
 * and the rest of the item keeps whatever the tensor holds (fill it with the padding value first).
 */
export function writePlanar(
  image: { width: number; height: number; data: Uint8Array },
  norm: Normalizer,
  tensor: Float32Array,
  index: number,
  height: number,
  width: number,
): void {
  const plane = height * width;
  const base = index * 3 * plane;
  const h = Math.min(height, image.height);
  const w = Math.min(width, image.width);
  for (let c = 0; c < 3; c++) {
    const table = norm.tables[c];
    const s = norm.source[c];
    const off = base + c * plane;
    for (let y = 0; y < h; y++) {
      let src = y * image.width * 3 + s;
      let dst = off + y * width;
      for (let x = 0; x < w; x++, src += 3) tensor[dst++] = table[image.data[src]];
    }
  }
}

/** Writes an RGB image into item `index` of an interleaved batch tensor [N, height, width, 3]. */
export function writeInterleaved(
  image: { width: number; height: number; data: Uint8Array },
  norm: Normalizer,
  tensor: Float32Array,
  index: number,
  height: number,
  width: number,
): void {
  const base = index * height * width * 3;
  const h = Math.min(height, image.height);
  const w = Math.min(width, image.width);
  const [t0, t1, t2] = norm.tables;
  const [s0, s1, s2] = norm.source;
  for (let y = 0; y < h; y++) {
    let src = y * image.width * 3;
    let dst = base + y * width * 3;
    for (let x = 0; x < w; x++, src += 3, dst += 3) {
      tensor[dst] = t0[image.data[src + s0]];
      tensor[dst + 1] = t1[image.data[src + s1]];
      tensor[dst + 2] = t2[image.data[src + s2]];
    }
  }
}

/** Index and value of the largest of n values from offset. */
export function argmax(values: Float32Array, offset: number, n: number): { index: number; value: number } {
  let index = 0;
  let value = values[offset];
  for (let i = 1; i < n; i++) {
    const v = values[offset + i];
    if (v > value) {
      value = v;
      index = i;
    }
  }
  return { index, value };
}
