/** Raw 8-bit pixels of a PNG/JPEG with sharp; used in-thread (async) and by image_worker.ts (sync). */
import sharp from 'sharp';

export interface RawPixels {
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA, as decoded. */
  channels: number;
}

sharp.cache(false);

/**
 * Decode to 8-bit interleaved pixels, as stored (no EXIF rotation, like PIL's Image.open).
 * Any libjpeg/libpng warning (truncated data, bad CRC) is an error.
 */
export async function sharpDecode(bytes: Uint8Array, maxPixels: number): Promise<RawPixels> {
  const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'warning' })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: info.channels };
}
