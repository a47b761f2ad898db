/** `pngjs` for the web bundle (it needs Node streams and zlib): PNG.sync.write/read over fast-png. */
import { decode, encode } from 'fast-png';

const CHANNELS: Record<number, 1 | 2 | 3 | 4> = { 0: 1, 4: 2, 2: 3, 6: 4 };

export class PNG {
  static sync = {
    write(png: { width: number; height: number; data: Uint8Array }, o: { colorType?: number } = {}): Uint8Array {
      const channels = CHANNELS[o.colorType ?? 6] ?? 4;
      return encode({ width: png.width, height: png.height, data: png.data, channels, depth: 8 });
    },
    read(bytes: Uint8Array): { width: number; height: number; data: Uint8Array } {
      const img = decode(bytes);
      const n = img.width * img.height;
      const data = new Uint8Array(n * 4);
      const src = img.data;
      const c = img.channels;
      const k = img.depth === 16 ? 257 : 1;
      for (let i = 0; i < n; i++) {
        const g = Math.round(src[i * c]! / k);
        if (c <= 2) data.set([g, g, g, c === 2 ? Math.round(src[i * c + 1]! / k) : 255], i * 4);
        else data.set([g, Math.round(src[i * c + 1]! / k), Math.round(src[i * c + 2]! / k), c === 4 ? Math.round(src[i * c + 3]! / k) : 255], i * 4);
      }
      return { width: img.width, height: img.height, data };
    },
  };
}
export default { PNG };
