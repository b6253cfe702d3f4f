# keep a copy of every training checkpoint (the sweep removes a cell's folder once it is done)
while true; do
  for d in runs/c1000-p150-*/checkpoints/*/; do
    [ -f "$d/checkpoint.json" ] || continue
    n=$(basename "$d"); mkdir -p runs/ckpt-snap/$n
    cp -p "$d"/* runs/ckpt-snap/$n/ 2>/dev/null
    ls -t runs/ckpt-snap/$n/*.safetensors 2>/dev/null | tail -n +3 | xargs -r rm -f
  done
  sleep 60
done
