# How the night of 2026-12-07 collected its T = 1000 cells into cap400/ and adding_1000/ (run from the
# repository root with the run folders of that night: runs/c1000-p150-C, runs/c1000-cap400, runs/ckpt-snap,
# runs/a1000-cap400*).
set -e
export OMP_NUM_THREADS=1 PYTHONPATH=src
P=docs/figures/suite_mem/p150
# copy_1000 under cap 400,000: every finished cell and the latest checkpoint of every unfinished one
rm -rf runs/c1000-final && mkdir -p runs/c1000-final
.venv/bin/python $P/recap.py runs/c1000-final runs/c1000-p150-C runs/c1000-cap400 runs/ckpt-snap
cp runs/c1000-cap400/cells/*.json runs/c1000-final/cells/
rm -rf runs/c1000-final/checkpoints/copy_1000__lstm__*   # finished cells' leftovers from snapshots
rm -rf runs/c1000-final/checkpoints/adding_1000__*  # recap.py takes every task's snapshots; adding_1000 goes below
.venv/bin/tnd suite --report-only --out runs/c1000-final --tasks copy_1000 --models tnd tnd_shared lstm lstm_chrono mlp --tuned none
# adding_1000: chrono (finished or not), tnd and lstm (checkpoints)
rm -rf runs/a1000-final && mkdir -p runs/a1000-final/cells runs/a1000-final/checkpoints
for d in runs/a1000-cap400 runs/a1000-cap400-tnd runs/a1000-cap400-lstm; do
  [ -d $d/cells ] && cp $d/cells/*.json runs/a1000-final/cells/ 2>/dev/null || true
  [ -d $d/checkpoints ] && cp -r $d/checkpoints/* runs/a1000-final/checkpoints/ 2>/dev/null || true
done
ls runs/a1000-final/cells | grep -q . && .venv/bin/tnd suite --report-only --out runs/a1000-final --tasks adding_1000 --models tnd lstm lstm_chrono --tuned none || true
# 2026-12-08: the default LSTM's adding_1000 seed 0 finished (its cell replaces its checkpoint); the latest
# checkpoint of TND seed 0; the LSTM seed 1 finished too
cp runs/a1000-cap400-lstm/cells/adding_1000__lstm__na__seed0.json $P/adding_1000/cells/
rm -rf $P/adding_1000/checkpoints/adding_1000__lstm__na__seed0-*
rm -rf $P/adding_1000/checkpoints/adding_1000__tnd__small_world__seed0-* && cp -r runs/a1000-cap400-tnd/checkpoints/* $P/adding_1000/checkpoints/
cp runs/a1000-cap400-lstm/cells/adding_1000__lstm__na__seed1.json $P/adding_1000/cells/  # it finished at the session's end
.venv/bin/tnd suite --report-only --out $P/adding_1000 --tasks adding_1000 --models tnd lstm lstm_chrono --tuned none
