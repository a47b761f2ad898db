/**
 * The worker behind images.ts's synchronous decoders: sharp (libvips with libjpeg-turbo
 * and libpng, the libraries Pillow uses) is asynchronous only, so decodeImage() hands the
 * bytes to this worker and waits (synckit).
 */
import { runAsWorker } from 'synckit';
import { sharpDecode } from './sharp_decode.js';

runAsWorker(sharpDecode);
