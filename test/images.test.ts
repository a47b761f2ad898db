import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import {
  decodeImage,
  decodeImageAsync,
  decodeImageBuffer,
  decodeImageRgba,
  encodePng,
  folderLabel,
  imageFileLabel,
  isImageFileName,
  probeImage,
} from '../src/io/images.js';

const dir = mkdtempSync(join(tmpdir(), 'goodnet-images-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function ramp(n: number): Uint8Array {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 37 + 11) % 256;
  return a;
}

test('imageFileLabel reads label43 / label=43 / label_43, else -1', () => {
  assert.equal(imageFileLabel('cl_0-label43.png'), 43);
  assert.equal(imageFileLabel('sun_0-label0.png'), 0);
  assert.equal(imageFileLabel('x_label=7.jpg'), 7);
  assert.equal(imageFileLabel('x_label_12.JPEG'), 12);
  assert.equal(imageFileLabel('/some/dir/LABEL1268.png'), 1268);
  assert.equal(imageFileLabel('face.png'), -1);
  assert.equal(imageFileLabel('label.png'), -1);
  assert.equal(imageFileLabel('label43/face.png'), -1, 'only the file name counts');
  assert.equal(folderLabel('43'), 43);
  assert.equal(folderLabel('cats'), -1);
  assert.equal(folderLabel('4a'), -1);
  assert.ok(isImageFileName('a.PNG') && isImageFileName('b.jpg') && isImageFileName('c.JpEg'));
  assert.ok(!isImageFileName('d.gif') && !isImageFileName('png'));
});

test('encodePng/decodeImage round trip: grey, grey+alpha, RGB, RGBA', () => {
  const w = 5;
  const h = 4;
  for (const c of [1, 2, 3, 4] as const) {
    const px = ramp(w * h * c);
    const p = join(dir, `rt${c}.png`);
    writeFileSync(p, encodePng(px, w, h, c));
    const img = decodeImage(p);
    const outC = c <= 2 ? 1 : 3;
    assert.equal(img.width, w);
    assert.equal(img.height, h);
    assert.equal(img.channels, outC);
    const want = new Uint8Array(w * h * outC);
    for (let i = 0; i < w * h; i++) for (let k = 0; k < outC; k++) want[i * outC + k] = px[i * c + k]!;
    assert.deepEqual(img.data, want, `channels ${c}`);
    assert.deepEqual(probeImage(p), { format: 'png', width: w, height: h, channels: outC });
  }
});

test('encodePng rounds and clamps non-byte input and checks its length', () => {
  const buf = encodePng(new Float32Array([-5, 0.4, 127.6, 300]), 2, 2, 1);
  assert.deepEqual(decodeImageBuffer(buf, 'mem.png').data, new Uint8Array([0, 0, 128, 255]));
  assert.throws(() => encodePng(new Uint8Array(5), 2, 2, 1), /expected 4 values for 2x2x1, got 5/);
});

test('JPEG decode and probe (RGB)', () => {
  const w = 8;
  const h = 6;
  const rgba = new Uint8Array(w * h * 4).fill(200);
  const p = join(dir, 'a.jpg');
  writeFileSync(p, jpeg.encode({ data: rgba, width: w, height: h }, 95).data);
  const img = decodeImage(p);
  assert.equal(img.channels, 3);
  assert.equal(img.width, w);
  assert.equal(img.height, h);
  assert.equal(img.data.length, w * h * 3);
  assert.ok(Math.abs(img.data[0]! - 200) <= 3);
  assert.deepEqual(probeImage(p), { format: 'jpeg', width: w, height: h, channels: 3 });
});

test('corrupt and non-image files are one-line errors naming the file', () => {
  const junk = join(dir, 'junk.png');
  writeFileSync(junk, 'this is not a png');
  assert.throws(() => decodeImage(junk), /junk\.png: not a valid PNG or JPEG image/);
  assert.throws(() => probeImage(junk), /junk\.png: not a valid PNG image/);
  const good = encodePng(ramp(64 * 64 * 3), 64, 64, 3);
  const cut = join(dir, 'cut.png');
  writeFileSync(cut, good.subarray(0, 60));
  assert.throws(() => decodeImage(cut), (e: Error) => /cut\.png: corrupt PNG image/.test(e.message) && !e.message.includes('\n'));
  const badJpg = join(dir, 'bad.jpg');
  writeFileSync(badJpg, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xd9]));
  assert.throws(() => probeImage(badJpg), /bad\.jpg: corrupt JPEG image \(no frame header\)/);
  assert.throws(() => decodeImage(badJpg), /bad\.jpg: corrupt JPEG image/);
  assert.throws(() => decodeImage(join(dir, 'missing.png')), /missing\.png: cannot read image: file not found/);
});

const JPEG_FIX = join(fileURLToPath(new URL('../../test/fixtures/keras3/jpeg/', import.meta.url)));

test('JPEGs decode like Pillow: at most 4 grey levels from PIL on every fixture (sync and async)', async () => {
  const files = readdirSync(JPEG_FIX).filter((f) => f.endsWith('.jpg'));
  assert.ok(files.length >= 10, 'fixture JPEGs present');
  for (const f of files) {
    const mine = decodeImage(join(JPEG_FIX, f));
    const pil = decodeImage(join(JPEG_FIX, f.replace(/\.jpg$/, '.pil.png')));
    assert.deepEqual([mine.width, mine.height, mine.channels], [pil.width, pil.height, pil.channels], f);
    let worst = 0;
    for (let i = 0; i < pil.data.length; i++) worst = Math.max(worst, Math.abs(mine.data[i]! - pil.data[i]!));
    assert.ok(worst <= 4, `${f}: max |goodnet - PIL| = ${worst}`);
    assert.deepEqual((await decodeImageAsync(join(JPEG_FIX, f))).data, mine.data, `${f}: async = sync`);
  }
});

test('PNG edge cases: invalid bit depth refused, palette and 16-bit decoded, alpha dropped or kept', () => {
  // A 4-bit RGB PNG is invalid (RGB allows 8 or 16 bits): refused, never decoded to garbage.
  const png = Buffer.from(encodePng(ramp(4 * 4 * 3), 4, 4, 3));
  png[24] = 4;
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  const bad = join(dir, 'rgb4.png');
  writeFileSync(bad, png);
  assert.throws(() => decodeImage(bad), /rgb4\.png: corrupt PNG image \(bit depth 4 is invalid for colour type 2\)/);
  assert.throws(() => probeImage(bad), /rgb4\.png: corrupt PNG image \(bit depth 4/);
  assert.throws(() => decodeImageRgba(bad), /rgb4\.png: corrupt PNG/);
  // 16-bit grey through pngjs: 8-bit values v*257 come back as v.
  const g16 = new PNG({ width: 3, height: 2, bitDepth: 16, colorType: 0, inputColorType: 0, inputHasAlpha: false });
  const vals = [0, 1, 127, 128, 254, 255];
  g16.data = Buffer.alloc(12);
  vals.forEach((v, i) => g16.data.writeUInt16BE(v * 257, i * 2));
  const p16 = join(dir, 'grey16.png');
  writeFileSync(p16, PNG.sync.write(g16, { colorType: 0, inputColorType: 0, bitDepth: 16, inputHasAlpha: false }));
  const d16 = decodeImage(p16);
  assert.equal(d16.channels, 1);
  assert.deepEqual(Array.from(d16.data), vals);
  // RGBA: decodeImage drops alpha, decodeImageRgba keeps it.
  const rgba = ramp(2 * 2 * 4);
  const pa = join(dir, 'rgba.png');
  writeFileSync(pa, encodePng(rgba, 2, 2, 4));
  assert.deepEqual(Array.from(decodeImage(pa).data), Array.from(rgba).filter((_, i) => i % 4 !== 3));
  const r = decodeImageRgba(pa);
  assert.equal(r.hasAlpha, true);
  assert.deepEqual(Array.from(r.data), Array.from(rgba));
});

/** PNG chunk CRC (for hand-made headers). */
function crc32(buf: Uint8Array): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
