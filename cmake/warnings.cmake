# Warnings are errors for the project's own targets (not for third-party headers,
# which are included as SYSTEM).
#
# GCC 12 at -O2/-O3 reports well-known false positives from inside libstdc++ (std::string
# and std::optional inlined into our code: -Wrestrict, -Wnull-dereference,
# -Wmaybe-uninitialized, -Wstringop-overflow/-overread, -Warray-bounds). Optimised builds
# keep them as warnings; the unoptimised ASan+UBSan build that the tests run keeps every
# warning an error, so no real one slips through.
function(vandra_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Werror -Wshadow -Wnon-virtual-dtor -Wold-style-cast
    -Wcast-align -Woverloaded-virtual -Wconversion -Wsign-conversion -Wswitch-enum
    -Wnull-dereference -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
    $<$<AND:$<CXX_COMPILER_ID:GNU>,$<NOT:$<CONFIG:Debug>>>:-Wno-error=restrict;-Wno-error=null-dereference;-Wno-error=maybe-uninitialized;-Wno-error=stringop-overflow;-Wno-error=stringop-overread;-Wno-error=array-bounds>)
endfunction()
