# Compiler cache (ADR 0031): a second build of the same sources, from any clone of the
# repository on this machine, takes its objects from ccache instead of compiling them again.
# Paths are hashed relative to the source tree, so two clones share their objects.
option(VANDRA_CCACHE "Compile through ccache when it is installed" ON)
if(VANDRA_CCACHE)
  find_program(VANDRA_CCACHE_PROGRAM ccache)
  if(VANDRA_CCACHE_PROGRAM)
    set(launcher ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${CMAKE_SOURCE_DIR} CCACHE_NOHASHDIR=1
                 CCACHE_MAXSIZE=8G ${VANDRA_CCACHE_PROGRAM})
    set(CMAKE_C_COMPILER_LAUNCHER ${launcher})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${launcher})
  endif()
endif()
