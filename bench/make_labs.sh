#!/bin/bash
# The lab BadNets (and clean controls) that README's defense tables were measured on.
# Usage: bench/make_labs.sh [DIR]   (default /work/labs; ~15 min of DeepID training and
# ~1.5-2 h of VGG/ResNet training on an idle 2-core machine). Same seed, same backend: same weights.
set -eu
D=${1:-/work/labs}
G="node bin/goodnet.js attack --train-engine tfjs"   # tfjs-wasm: the engine they were made with (the default has been auto since session 23)
$G --out "$D/deepid-patch" -e 6                                  # = the demo's BadNet before session 20 (goodnet demo --train-engine tfjs)
node bin/goodnet.js attack --out "$D/demo-ort" -e 6 --train-engine ort   # = the demo's BadNet since session 20 (goodnet demo writes it to DIR/lab)
$G --out "$D/deepid-blend" --trigger blend -e 6
$G --out "$D/deepid-clean" --poison-rate 0 -e 6
for a in resnet vgg; do
  $G --out "$D/$a-patch" --arch $a -e 3
  $G --out "$D/$a-blend" --arch $a --trigger blend -e 3
  $G --out "$D/$a-clean" --arch $a --poison-rate 0 -e 3
done
