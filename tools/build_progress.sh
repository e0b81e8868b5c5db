#!/bin/sh
# The compiler launcher of regtune's build (CMakeLists.txt, REGTUNE_BUILD_PROGRESS): pip shows
# only a spinner while the C++ core compiles (about 2 minutes on 2 cores), so each compile says
# which file it is and how far the build has come, on the terminal when there is one (/dev/tty:
# pip keeps the build's own output to itself unless -v) and in the build's output. Then it runs
# the compiler, unchanged.
#
#   build_progress.sh TOTAL STAMP_DIR compiler [arguments...]
total=$1
stamps=$2
shift 2
src=
obj=
prev=
for a in "$@"; do
  [ "$prev" = "-c" ] && src=$a
  [ "$prev" = "-o" ] && obj=$a
  prev=$a
done
if [ -n "$src" ]; then
  mkdir -p "$stamps" 2>/dev/null
  # one stamp per object file: a file compiled again is not counted twice
  stamp="$stamps/$(printf '%s' "$obj" | tr '/.' '__')"
  new=1
  [ -e "$stamp" ] && new=0
  : >"$stamp" 2>/dev/null
  n=$(ls "$stamps" 2>/dev/null | wc -l | tr -d ' ')
  target=
  case $obj in
    *regtune_kernels_avx512*) target=" (AVX-512)" ;;
    *regtune_kernels_avx2*) target=" (AVX2)" ;;
    *regtune_kernels_scalar*) target=" (scalar)" ;;
  esac
  line="regtune build: [$n/$total] compiling ${src##*/cpp/}$target"
  [ "$n$new" = 11 ] && line="regtune build: $total C++ files, about 2 minutes on an idle 2-core machine
$line"
  printf '%s\n' "$line"
  # on the terminal: the first line below pip's "Building wheel ... |", the others over the
  # spinner's character (a carriage return first)
  lead='\r'
  [ "$n$new" = 11 ] && lead='\n'
  { printf "$lead%s\n" "$line" >/dev/tty; } 2>/dev/null
fi
exec "$@"
