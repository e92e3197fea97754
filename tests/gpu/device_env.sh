# Sourced by the tests/gpu/device_*.sh scripts after they set $bin and $out: logs everything
# to $out/log, defines step(), and finds the CUDA libraries (cuBLAS, NCCL) wherever the GPU
# machine keeps them (the toolkit, or a Python wheel's folder), after $bin/lib's own.
mkdir -p "$out"
exec > >(tee "$out/log") 2>&1
step() { echo; echo "== $*"; }
cudalibs=$(find /usr/local/cuda* /usr/lib /opt -name 'libcublas.so.*' -o -name 'libnccl.so.*' 2>/dev/null |
           xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$bin/lib:${cudalibs}${LD_LIBRARY_PATH:-}"
