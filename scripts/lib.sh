# Shared by the install scripts (sourced, not run).

apt_install() {  # apt_install PKG...: install the Debian packages not yet installed (root with apt-get only)
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "note: not root or no apt-get: install $* yourself" >&2
    return 0
  fi
  local missing=""
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
}

llama_cmake_args() {  # CMake flags for llama.cpp: this CPU's vector extensions, never AMX
  # A native build (-march=native) turns on AMX where the CPU advertises it, but some kernels and hypervisors
  # do not grant the AMX tile state: `ldtilecfg` then faults and every prompt over a few dozen tokens kills the
  # process (seen on these machines). So list the extensions ourselves, from /proc/cpuinfo, without AMX.
  local flags args="-DGGML_NATIVE=OFF"
  flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  case "$(uname -m)" in x86_64|amd64) ;; *) echo ""; return 0 ;; esac  # elsewhere the default is fine
  local pair
  for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 avx512vbmi:AVX512_VBMI \
              avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
    case "$flags" in *" ${pair%%:*} "*) args="$args -DGGML_${pair#*:}=ON" ;; esac
  done
  echo "$args"
}

ensure_llama_cpp() {  # rebuild llama-cpp-python when the installed build uses AMX (see llama_cmake_args)
  local info
  info=$("$PY" -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())" 2>/dev/null) || return 0
  case "$info" in
    *AMX*)
      echo "rebuilding llama-cpp-python without AMX (a native build with AMX crashes on this machine): minutes"
      CMAKE_ARGS="$(llama_cmake_args)" "$PY" -m pip install -q --disable-pip-version-check --no-cache-dir \
        --force-reinstall --no-deps "llama-cpp-python==$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')"
      ;;
  esac
}
