#!/usr/bin/env bash
# System packages the project uses: ffmpeg (browser recordings: webm/m4a), espeak-ng (speech synthesised
# for tests and the demo corpus), chromium + chromium-driver (the browser test), openmpi-bin (`accelerate launch
# --cpu` starts several CPU processes through mpirun: tests/test_distributed.py). Installed with apt-get
# when missing and we are root; otherwise we say what is missing and carry on (the app itself runs
# without them; the tests that need them say so).
set -u
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need+=(sox)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || { echo "apt-get could not install: ${need[*]}" >&2; exit 1; }
else
  echo "note: missing system packages (${need[*]}); install them with your package manager for the full test suite" >&2
fi
