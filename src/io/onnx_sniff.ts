/** Recognize ONNX files by content, without loading the protobuf schema. */
import { closeSync, openSync, readSync } from 'node:fs';

/**
 * An ONNX file is a protobuf ModelProto whose first field is ir_version (field 1, varint:
 * byte 0x08) followed by a small version number; torch and onnx both write it first.
 */
export function looksLikeOnnxBytes(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x08 && head[1]! >= 1 && head[1]! <= 20;
}

/** True when the file starts like an ONNX ModelProto. */
export function looksLikeOnnx(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const head = Buffer.alloc(2);
    return readSync(fd, head, 0, 2, 0) === 2 && looksLikeOnnxBytes(head);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
